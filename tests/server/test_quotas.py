"""Project quotas through the API and `insitu quota`, against a real server (SQLite and
PostgreSQL), with real engine processes holding real work for the quota below current use."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from conftest import Server
from insitu.engine import bind_params
from insitu.sdk import compile_pipeline, load_pipeline
from insitu.server._submit import run_records
from insitu.store import open_store
from pg_fixture import databases

SERVER_DBS = databases("postgresql")  # INSITU_TEST_ALL_DBS=1: both

HOLD = str(Path(__file__).parents[1] / "pipelines" / "holding.py")


def _project(s: Server) -> tuple[str, httpx.Client, httpx.Client]:
    """A new project with an owner and a viewer: (name, owner's client, viewer's client)."""
    name = f"q-{uuid.uuid4().hex[:8]}"
    a = s.admin
    for user in (f"{name}-o", f"{name}-v"):
        assert a.post("/api/v1/users", json={"name": user}).status_code == 201
    assert a.post("/api/v1/projects", json={"name": name, "owner": f"{name}-o"}
                  ).status_code == 201
    assert a.put(f"/api/v1/projects/{name}/members/{name}-v", json={"role": "viewer"}
                 ).status_code == 200

    def client(user: str) -> httpx.Client:
        r = a.post("/api/v1/tokens", json={"name": "t", "user": user})
        assert r.status_code == 201, r.text
        return s.client(r.json()["token"])

    return name, client(f"{name}-o"), client(f"{name}-v")


def _quota_cli(s: Server, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INSITU_HOME": str(s.home), "COLUMNS": "200",
           "INSITU_SERVER": s.url, "INSITU_TOKEN": token}
    return subprocess.run([sys.executable, "-m", "insitu", "quota", *args], text=True,
                          capture_output=True, timeout=180, env=env)


def _until(cond: Callable[[], Any], what: str, timeout: float = 180) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting until {what}")


def test_an_owner_sets_a_quota_and_a_viewer_reads_it(server: Server) -> None:
    p, owner, viewer = _project(server)
    assert viewer.get(f"/api/v1/projects/{p}/quota").json()["quota"] is None
    body = {"quota": {"cpu": 8, "memory": "32GiB", "gpu:A100": 2}, "cohort": "research",
            "lending_limit": {"cpu": 2}}
    r = owner.put(f"/api/v1/projects/{p}/quota", json=body)
    assert r.status_code == 200, r.text
    got = viewer.get(f"/api/v1/projects/{p}/quota").json()
    assert got["quota"] == {"cpu": 8, "memory": 32 * 1024**3, "gpu:A100": 2}
    assert got["cohort"] == "research" and got["lending_limit"] == {"cpu": 2}
    assert got["use"]["cpu"] == 0 and got["updated_by"] == f"{p}-o"
    r = viewer.put(f"/api/v1/projects/{p}/quota", json=body)
    assert r.status_code == 403 and r.json()["hint"]
    audit = owner.get(f"/api/v1/projects/{p}/audit", params={"action": "quota.set"}).json()
    assert [x["outcome"] for x in audit["items"]] == ["ok"]
    assert owner.delete(f"/api/v1/projects/{p}/quota").status_code == 204
    assert viewer.get(f"/api/v1/projects/{p}/quota").json()["quota"] is None


def test_the_quota_commands_use_the_configured_server(server: Server) -> None:
    p, owner, viewer = _project(server)
    token = owner.headers["authorization"].split()[1]
    out = _quota_cli(server, token, "set", p, "--cpu", "8", "--memory", "32GiB",
                     "--gpu-type", "A100=2", "--cohort", "research", "--lend", "cpu=2")
    assert out.returncode == 0, out.stderr
    assert f"quota of project {p} set" in out.stdout, out.stdout
    got = viewer.get(f"/api/v1/projects/{p}/quota").json()
    assert got["quota"] == {"cpu": 8, "memory": 32 * 1024**3, "gpu:A100": 2}
    assert got["cohort"] == "research" and got["lending_limit"] == {"cpu": 2}
    shown = _quota_cli(server, viewer.headers["authorization"].split()[1], "show", p)
    assert shown.returncode == 0, shown.stderr
    assert f"project {p}, cohort research: 0 steps admitted, 0 waiting" in shown.stdout
    # a viewer may not set it: the server's message and fix, as one error, no traceback
    refused = _quota_cli(server, viewer.headers["authorization"].split()[1], "set", p,
                         "--cpu", "1")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    said = " ".join(refused.stderr.split())
    doc = viewer.put(f"/api/v1/projects/{p}/quota", json={"quota": {"cpu": 1}}).json()
    assert " ".join(doc["detail"].split()) in said and "fix:" in said, said
    assert viewer.get(f"/api/v1/projects/{p}/quota").json()["quota"]["cpu"] == 8
    # a token is never given on the command line (it would show in ps)
    assert _quota_cli(server, token, "show", p, "--token", token).returncode == 2
    gone = _quota_cli(server, token, "delete", p)
    assert gone.returncode == 0, gone.stderr
    assert f"project {p} has no quota now" in gone.stdout
    assert viewer.get(f"/api/v1/projects/{p}/quota").json()["quota"] is None


def test_bad_quotas_are_problems_and_change_nothing(server: Server) -> None:
    p, owner, _ = _project(server)
    assert owner.put(f"/api/v1/projects/{p}/quota", json={"quota": {"cpu": 4}}
                     ).status_code == 200
    cases = [({"quota": {"gpus": 2}}, "unknown resource 'gpus'"),
             ({"quota": {"cpu": -1}}, "cpu must be a number >= 0"),
             ({"quota": {"memory": "lots"}}, "memory"),
             ({"quota": {"cpu": 1}, "lending_limit": {"cpu": 1}},
              "borrowing and lending limits need a cohort"),
             ({"quota": {"cpu": 1}, "cohort": "Bad Name"}, "cohort name 'Bad Name'")]
    for body, words in cases:
        r = owner.put(f"/api/v1/projects/{p}/quota", json=body)
        doc = r.json()
        assert r.status_code == 400, (body, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert words in doc["detail"] and doc["hint"], doc
    assert owner.get(f"/api/v1/projects/{p}/quota").json()["quota"] == {"cpu": 4}


def test_a_quota_below_current_use_is_refused_unless_forced(server: Server,
                                                            tmp_path: Path) -> None:
    p, owner, _ = _project(server)
    token = owner.headers["authorization"].split()[1]
    assert owner.put(f"/api/v1/projects/{p}/quota", json={"quota": {"cpu": 4}}
                     ).status_code == 200
    store = open_store(server.db_url)
    home = tmp_path / "engine-home"
    env = {**os.environ, "INSITU_HOME": str(home), "INSITU_DB_URL": server.db_url,
           "INSITU_NODE_CPUS": "16", "INSITU_NODE_MEMORY": "16GiB"}
    procs: list[subprocess.Popen[str]] = []

    def start(pipeline: str, gate: str) -> str:
        spec = compile_pipeline(load_pipeline(f"{HOLD}:{pipeline}"), {"gate": gate})
        run, tasks = run_records(spec, bind_params(spec, {"gate": gate}), project=p,
                                 backend="local", supervised=False)  # run by `resume` here
        store.put(run, *tasks)
        procs.append(subprocess.Popen([sys.executable, "-m", "insitu", "resume", run.id,
                                       "--plain"], env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        return run.id

    ga, gb = str(tmp_path / "a"), str(tmp_path / "b")
    try:
        a = start("two_cpu", ga)
        _until(lambda: Path(f"{ga}.started").exists(), "run a's step holds 2 CPU")
        r = owner.put(f"/api/v1/projects/{p}/quota", json={"quota": {"cpu": 1}})
        assert r.status_code == 409, r.text
        doc = r.json()
        assert doc["detail"] == (f"project '{p}' uses 2 CPU now, more than the quota of 1 CPU "
                                 f"asked (run {a} step hold (2 CPU)); nothing was changed")
        assert "force" in doc["hint"]
        assert owner.get(f"/api/v1/projects/{p}/quota").json()["quota"] == {"cpu": 4}
        out = _quota_cli(server, token, "set", p, "--cpu", "1")
        assert out.returncode != 0
        said = " ".join((out.stdout + out.stderr).split())
        assert f"project '{p}' uses 2 CPU now" in said and "--force" in said, said
        # forced: the running step goes on, new work waits until use is under the quota
        out = _quota_cli(server, token, "set", p, "--cpu", "1", "--force")
        assert out.returncode == 0, out.stderr
        shown = _quota_cli(server, token, "show", p)
        assert shown.returncode == 0, shown.stderr
        assert "1 steps admitted" in shown.stdout and "cpu" in shown.stdout, shown.stdout
        b = start("one", gb)
        want = (f"project {p} uses 2 of its 1 CPU and the step asks for 1 more; it is in no "
                "cohort, so it cannot borrow")
        _until(lambda: store.list_tasks(b)[0].pending_reason == want, "run b waits")
        assert [x.state for x in store.list_attempts(a)] == ["running"]
        # /metrics: the quota, what the project holds of it, and what waits for it
        text = server.admin.get("/metrics").text
        got = {(f.name, tuple(sorted(x.labels.items()))): x.value
               for f in text_string_to_metric_families(text) for x in f.samples
               if x.labels.get("project") == p and f.name.startswith("insitu_quota")}
        assert got == {
            ("insitu_quota_limit", (("project", p), ("resource", "cpu"))): 1.0,
            ("insitu_quota_used", (("project", p), ("resource", "cpu"))): 2.0,
            ("insitu_quota_waiting_steps", (("project", p),)): 1.0}, got
        Path(ga).touch()
        _until(lambda: Path(f"{gb}.started").exists(), "run b starts once run a's step ends")
        Path(gb).touch()
        for proc in procs:
            text, _ = proc.communicate(timeout=180)
            assert proc.returncode == 0, text
        assert store.get_run(a).state == store.get_run(b).state == "succeeded"
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                proc.communicate(timeout=60)
        store.close()


def test_quota_without_a_server_says_how_to_name_one(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("INSITU_SERVER", "INSITU_TOKEN")}
    out = subprocess.run([sys.executable, "-m", "insitu", "quota", "show", "vision"],
                         text=True, capture_output=True, timeout=120,
                         env={**env, "INSITU_HOME": str(tmp_path)})
    assert out.returncode != 0
    said = " ".join(out.stderr.split())
    assert "quotas live on an insitu server, and no server is configured" in said, said
    assert "insitu login http://HOST:8420" in said and "INSITU_SERVER" in said, said
