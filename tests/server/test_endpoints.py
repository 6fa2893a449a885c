"""Endpoints on the server: a registered model served by a process the server runs, placed
by the scheduler, reached only through the API with a token (a real server on loopback, a
real run registering a tiny scikit-learn model, real serving processes)."""

from __future__ import annotations

import dataclasses
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from remote import wait_for

from conftest import Server, start_server, stop_server
from insitu.models import register
from insitu.server._endpoints import socket_path
from insitu.store import open_store
from pg_fixture import databases

SERVER_DBS = databases("postgresql")  # INSITU_TEST_ALL_DBS=1: both
PIPE = str(Path(__file__).parents[1] / "pipelines" / "endpoint_model.py")
A, B = "epa", "epb"
ROW = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64",
                   "data": [30.0, 31.0, 32.0, 33.0]}]}


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:
    """The server of this module: a node of 4 CPUs and 8 GiB, whatever this machine has,
    so that what fits is the same everywhere."""
    home = tmp_path_factory.mktemp("ep-home")
    if request.param == "sqlite":
        db_url = f"sqlite:///{home / 'server.db'}"
    else:
        import secrets

        db_url = request.getfixturevalue("postgres").create_database(
            "e_" + secrets.token_hex(6))
    mp = pytest.MonkeyPatch()
    mp.setenv("INSITU_NODE_CPUS", "4")
    mp.setenv("INSITU_NODE_MEMORY", "8GiB")
    s = start_server(db_url, home, "--poll", "0.2")
    try:
        yield s
    finally:
        stop_server(s)
        mp.undo()


@dataclass
class World:
    s: Server
    tokens: dict[str, str]

    @property
    def editor(self) -> httpx.Client:
        return self.s.client(self.tokens["ed"])

    @property
    def viewer(self) -> httpx.Client:
        return self.s.client(self.tokens["vw"])

    @property
    def other(self) -> httpx.Client:
        return self.s.client(self.tokens["ot"])


@pytest.fixture(scope="module")
def world(server: Server) -> World:
    s, a = server, server.admin
    for u in ("ed", "vw", "ot"):
        assert a.post("/api/v1/users", json={"name": u}).status_code == 201
    assert a.post("/api/v1/projects", json={"name": A, "owner": "ed"}).status_code == 201
    assert a.post("/api/v1/projects", json={"name": B, "owner": "ot"}).status_code == 201
    assert a.put(f"/api/v1/projects/{A}/members/ed", json={"role": "editor"}).status_code == 200
    assert a.put(f"/api/v1/projects/{A}/members/vw", json={"role": "viewer"}).status_code == 200
    tokens = {u: a.post("/api/v1/tokens", json={"name": u, "user": u}).json()["token"]
              for u in ("ed", "vw", "ot")}
    # a real run on the server's database and artifacts, its model registered in project A
    env = {**os.environ, "INSITU_HOME": str(s.home), "INSITU_DB_URL": s.db_url}
    env.pop("INSITU_SERVER", None)
    r = subprocess.run([sys.executable, "-m", "insitu", "run", f"{PIPE}:train", "--plain"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    store = open_store(s.db_url)
    run = store.list_runs(pipeline="train")[0]
    store.put(dataclasses.replace(run, project=A))
    register("clf", run=run.id, step="fit", alias="champion", store=store)
    register("clf", run=run.id, step="fit", alias="challenger", store=store)  # clf:2
    store.close()
    return World(s=s, tokens=tokens)


def _restart(s: Server) -> None:
    """Stop the server (its endpoints' processes stop with it) and start it again on the
    same database, home and port."""
    stop_server(s)
    port = s.url.rsplit(":", 1)[1]
    env = {**os.environ, "INSITU_HOME": str(s.home), "INSITU_NODE_CPUS": "4",
           "INSITU_NODE_MEMORY": "8GiB"}
    log = open(s.home / "server2.log", "ab")  # noqa: SIM115 - closed with the process
    s.proc = subprocess.Popen([sys.executable, "-m", "insitu", "server", "--db", s.db_url,
                               "--port", port, "--poll", "0.2"], stdout=log,
                              stderr=subprocess.STDOUT, env=env)

    def up() -> bool:
        assert s.proc.poll() is None, (s.home / "server2.log").read_text()
        try:
            return httpx.get(f"{s.url}/api/v1/health", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(up, 120, "the restarted server")


def _state(c: httpx.Client, name: str) -> dict:  # type: ignore[type-arg]
    r = c.get(f"/api/v1/projects/{A}/endpoints/{name}")
    assert r.status_code == 200, r.text
    return r.json()["status"]  # type: ignore[no-any-return]


def _running(c: httpx.Client, name: str, not_pid: int | None = None) -> dict:  # type: ignore[type-arg]
    def ready() -> dict | None:  # type: ignore[type-arg]
        s = _state(c, name)
        return s if s["state"] == "running" and s["pid"] != not_pid else None

    return wait_for(ready, 120, f"endpoint {name} running", every=0.1)  # type: ignore[no-any-return]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _cli(w: World, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INSITU_HOME": str(w.s.home / "cli"), "INSITU_SERVER": w.s.url,
           "INSITU_TOKEN": token, "INSITU_PROJECT": A, "COLUMNS": "250"}
    env.pop("INSITU_DB_URL", None)
    return subprocess.run([sys.executable, "-m", "insitu", *args], capture_output=True,
                          text=True, timeout=120, env=env)


def test_an_endpoint_serves_through_the_server_and_comes_back_when_killed(w: World) -> None:
    ed, vw = w.editor, w.viewer
    base = f"/api/v1/projects/{A}/endpoints"
    made = _cli(w, w.tokens["ed"], "endpoints", "create", "clf-ep", "--model", "clf@champion",
                "--cpu", "1", "--memory", "512MiB", "--payloads", "1",
                "--canary", "clf@challenger", "--canary-percent", "0")
    assert made.returncode == 0, made.stdout + made.stderr
    assert "reserving 1 CPU, 512.0 MiB" in made.stdout, made.stdout
    ep = vw.get(f"{base}/clf-ep").json()
    assert ep["reserved"] == {"cpu": 1.0, "memory": 512 * 2**20, "gpu": 0.0}
    t = ep["config"]["traffic"]
    assert (t["canary"], t["percent"]) == (2, 0.0)  # the alias, resolved
    t0 = time.monotonic()
    first = _running(vw, "clf-ep")
    print(f"\nfrom create to running: {time.monotonic() - t0:.2f} s")
    assert first["placement"]["cpu"] == 1.0

    # inference through the server, with a viewer's token (OIP v2 JSON, and KServe v1)
    r = vw.post(f"{base}/clf-ep/v2/models/clf-ep/infer", json=ROW)
    assert r.status_code == 200, r.text
    assert r.headers["x-insitu-version"] == "clf:1"
    out = {o["name"]: o for o in r.json()["outputs"]}
    assert out["predict"]["data"] == [1]
    r = vw.post(f"{base}/clf-ep/v1/models/clf-ep:predict",
                json={"instances": [[0.0, 1.0, 2.0, 3.0]]})
    assert r.status_code == 200 and r.json()["predictions"] == [0], r.text
    meta = vw.get(f"{base}/clf-ep/v2/models/clf-ep").json()
    assert meta["parameters"]["flavor"] == "sklearn"
    r = vw.post(f"{base}/clf-ep/v2/models/clf-ep/infer", json={"inputs": [
        {"name": "input-0", "shape": [1, 3], "datatype": "FP64", "data": [1.0, 2.0, 3.0]}]})
    assert r.status_code == 400 and "[1, 3]" in r.json()["error"], r.text
    # no token, or a token of another project: refused, and nothing is told
    assert httpx.post(f"{w.s.url}{base}/clf-ep/v2/models/clf-ep/infer",
                      json=ROW).status_code == 401
    r = w.other.post(f"{base}/clf-ep/v2/models/clf-ep/infer", json=ROW)
    assert r.status_code == 404 and r.json()["detail"] == f"no project {A!r}"
    # nothing of it listens on the network: its socket is a file only the server's user
    # may reach
    sock = socket_path(w.s.home, A, "clf-ep")
    assert oct(os.stat(os.path.dirname(sock)).st_mode & 0o777) == "0o700"

    # the hop through the server, measured (printed, not asserted)
    with httpx.Client(transport=httpx.HTTPTransport(uds=sock),
                      base_url="http://endpoint") as direct:
        def p50(c: httpx.Client, path: str) -> float:
            times = []
            for _ in range(150):
                t0 = time.perf_counter()
                assert c.post(path, json=ROW).status_code == 200
                times.append(time.perf_counter() - t0)
            return statistics.median(times[20:]) * 1000

        def g50(c: httpx.Client, path: str) -> float:
            times = []
            for _ in range(100):
                t0 = time.perf_counter()
                assert c.get(path).status_code == 200
                times.append(time.perf_counter() - t0)
            return statistics.median(times[20:]) * 1000

        api = g50(vw, "/api/v1/whoami")
        bare = p50(direct, "/v2/models/clf-ep/infer")
        proxied = p50(vw, f"{base}/clf-ep/v2/models/clf-ep/infer")
    print(f"\nc=1 p50: {bare:.2f} ms at the endpoint's socket, {proxied:.2f} ms through the "
          f"server (+{proxied - bare:.2f} ms); GET whoami (a token checked, nothing else) "
          f"{api:.2f} ms")

    # ls / show / logs from the CLI, against the server
    ls = _cli(w, w.tokens["vw"], "endpoints", "ls")
    assert ls.returncode == 0, ls.stderr
    assert "clf-ep" in ls.stdout and "running" in ls.stdout and "clf@champion" in ls.stdout
    show = _cli(w, w.tokens["vw"], "endpoints", "show", "clf-ep")
    assert show.returncode == 0, show.stderr
    assert "version clf:1: 1 ready" in show.stdout, show.stdout
    logs = _cli(w, w.tokens["vw"], "endpoints", "logs", "clf-ep")
    assert logs.returncode == 0 and "serving clf:1 as clf-ep" in logs.stdout, logs.stdout

    # the endpoint's metrics on the server's /metrics
    text = w.s.admin.get("/metrics").text
    assert f'insitu_endpoint_requests_total{{code="200",endpoint="clf-ep",project="{A}"}}' \
        in text
    assert f'insitu_endpoint_replicas{{endpoint="clf-ep",project="{A}",version="1"}} 1.0' \
        in text
    assert f'insitu_endpoints{{project="{A}",state="running"}} 1.0' in text

    # what it reserves shows in the cluster's view, as steps' allocations do
    cl = vw.get("/api/v1/cluster").json()
    mine = [a for a in cl["allocations"] if a.get("endpoint") == "clf-ep"]
    assert mine and mine[0]["cpu"] == 1.0 and mine[0]["project"] == A
    assert [n["allocated"]["cpu"] for n in cl["nodes"] if n["name"] == mine[0]["node"]] == [1.0]

    # another endpoint that does not fit beside it waits, and says why
    r = ed.post(base, json={"name": "wide", "model": "clf:1", "cpu": 3.5})
    assert r.status_code == 201, r.text
    waiting = wait_for(lambda: (s := _state(vw, "wide"))["state"] == "waiting" and s,
                       60, "a waiting endpoint")
    assert "CPU" in waiting["reason"], waiting
    r = vw.post(f"{base}/wide/v2/models/wide/infer", json=ROW)
    assert r.status_code == 503 and "is waiting" in r.json()["detail"], r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert ed.delete(f"{base}/wide").status_code == 204

    # its serving process killed: the server starts it again
    t0 = time.monotonic()
    os.kill(first["pid"], signal.SIGKILL)
    again = _running(vw, "clf-ep", not_pid=first["pid"])
    print(f"from kill to running again: {time.monotonic() - t0:.2f} s")
    assert again["restarts"] == 1
    r = vw.post(f"{base}/clf-ep/v2/models/clf-ep/infer", json=ROW)
    assert r.status_code == 200, r.text

    # payloads logged by the endpoint, read through the server
    got = wait_for(lambda: vw.get(f"{base}/clf-ep/logs", params={"payloads": 3}).json()
                   .get("payloads"), 30, "logged payloads")
    assert got[-1]["endpoint"] == "clf-ep" and got[-1]["status"] == 200

    # traffic moved live: a canary, a rollback, a promote (the alias moves)
    r = ed.put(f"{base}/clf-ep/traffic", json={"canary": 2, "percent": 100})
    assert r.status_code == 200, r.text
    assert r.json()["config"]["traffic"]["canary"] == 2
    r = vw.post(f"{base}/clf-ep/v2/models/clf-ep/infer", json=ROW)
    assert r.headers["x-insitu-version"] == "clf:2", r.text
    assert ed.post(f"{base}/clf-ep/rollback").status_code == 200
    r = vw.post(f"{base}/clf-ep/v2/models/clf-ep/infer", json=ROW)
    assert r.headers["x-insitu-version"] == "clf:1"
    assert vw.post(f"{base}/clf-ep/promote").status_code == 403  # a viewer may not
    assert ed.put(f"{base}/clf-ep/traffic", json={"canary": 2, "percent": 5}).status_code == 200
    r = ed.post(f"{base}/clf-ep/promote")
    assert r.status_code == 200 and r.json()["config"]["traffic"]["canary"] is None, r.text
    r = vw.post(f"{base}/clf-ep/v2/models/clf-ep/infer", json=ROW)
    assert r.headers["x-insitu-version"] == "clf:2"
    r = ed.put(f"{base}/clf-ep/traffic", json={"canary": 9, "percent": 5})
    assert r.status_code == 400 and "9" in r.json()["detail"], r.text

    # the server restarted: the endpoint comes back, serving what was promoted
    _restart(w.s)
    again = _running(w.viewer, "clf-ep", not_pid=again["pid"])
    r = w.viewer.post(f"{base}/clf-ep/v2/models/clf-ep/infer", json=ROW)
    assert r.status_code == 200, r.text
    assert r.headers["x-insitu-version"] == "clf:2"
    ed, vw = w.editor, w.viewer

    # changed settings: placed again and restarted with them
    r = ed.patch(f"{base}/clf-ep", json={"max_replicas": 2})
    assert r.status_code == 200, r.text
    assert r.json()["reserved"]["cpu"] == 2.0 and r.json()["generation"] == 2
    again = _running(vw, "clf-ep", not_pid=again["pid"])
    assert again["placement"]["cpu"] == 2.0
    assert vw.post(f"{base}/clf-ep/v2/models/clf-ep/infer", json=ROW).status_code == 200

    # deleted: its process stops, and it is gone
    assert ed.delete(f"{base}/clf-ep").status_code == 204
    wait_for(lambda: not _alive(again["pid"]), 60, "the serving process to stop")
    assert vw.get(f"{base}/clf-ep").status_code == 404
    r = vw.post(f"{base}/clf-ep/v2/models/clf-ep/infer", json=ROW)
    assert r.status_code == 404 and "no endpoint 'clf-ep'" in r.json()["detail"]
    audit = w.s.admin.get(f"/api/v1/projects/{A}/audit").json()
    actions = [x["action"] for x in audit["items"]]
    assert "endpoint.create" in actions and "endpoint.delete" in actions


def test_who_may_do_what_and_what_is_refused(w: World) -> None:
    base = f"/api/v1/projects/{A}/endpoints"
    r = w.viewer.post(base, json={"name": "v", "model": "clf@champion"})
    assert r.status_code == 403 and "needs editor" in r.json()["detail"]
    r = w.other.get(base)
    assert r.status_code == 404 and r.json()["detail"] == f"no project {A!r}"
    # more than any node has: refused at once with the scheduler's reason, nothing written
    r = w.editor.post(base, json={"name": "huge", "model": "clf@champion", "cpu": 64})
    assert r.status_code == 400, r.text
    assert "cannot be placed on any node" in r.json()["detail"] and r.json()["hint"]
    r = w.editor.post(base, json={"name": "nomodel", "model": "nope@champion"})
    assert r.status_code == 404 and "no model 'nope'" in r.json()["detail"]
    r = w.editor.post(base, json={"name": "bad", "model": "clf@champion",
                                  "traffic": {"canary": 1, "percent": 140}})
    assert r.status_code in (400, 422)
    assert [e["name"] for e in w.viewer.get(base).json()] == []
    # the registry's view of a version names its flavour (what its endpoint's runtime is)
    got = w.viewer.get(f"/api/v1/projects/{A}/models/clf").json()
    assert [v["flavor"] for v in got["versions"]] == ["sklearn", "sklearn"]
    assert w.viewer.get(f"/api/v1/projects/{A}/models/clf/versions/1").json()["flavor"] == \
        "sklearn"
    # from Python the same, on the server named by INSITU_SERVER/INSITU_TOKEN
    import insitu
    from insitu.errors import PermissionDenied, UserError

    mp = pytest.MonkeyPatch()
    mp.setenv("INSITU_SERVER", w.s.url)
    mp.setenv("INSITU_TOKEN", w.tokens["vw"])
    try:
        assert insitu.endpoints.list(project=A) == []
        with pytest.raises(PermissionDenied, match="needs editor"):
            insitu.endpoints.create("v", "clf@champion", project=A)
        mp.setenv("INSITU_TOKEN", w.tokens["ed"])
        with pytest.raises(UserError, match="cannot be placed on any node"):
            insitu.endpoints.create("huge", "clf@champion", project=A, cpu=64)
        assert insitu.endpoints.url("x", project=A) == f"{w.s.url}{base}/x"
    finally:
        mp.undo()
    # the CLI says the same
    bad = _cli(w, w.tokens["ed"], "endpoints", "create", "huge", "--model", "clf@champion",
               "--cpu", "64")
    assert bad.returncode != 0 and "cannot be placed on any node" in bad.stderr + bad.stdout


@pytest.fixture
def w(world: World) -> World:
    return world


def test_insitu_serve_says_it_serves_the_local_registry_when_a_server_is_configured(
        w: World, tmp_path: Path) -> None:
    env = {**os.environ, "INSITU_HOME": str(tmp_path), "INSITU_SERVER": w.s.url,
           "INSITU_TOKEN": w.tokens["vw"], "COLUMNS": "250"}
    env.pop("INSITU_DB_URL", None)
    r = subprocess.run([sys.executable, "-m", "insitu", "serve", "clf@champion"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode != 0  # this machine's registry has no such model
    assert "serves a model of this machine's registry" in r.stderr, r.stderr
    assert "insitu endpoints create NAME --model clf@champion" in r.stderr, r.stderr
