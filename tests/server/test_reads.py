"""The read routes over real HTTP, on runs made by running real pipelines against the
server's database and INSITU_HOME: each answer checked against what the CLI shows."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

from conftest import Server
from insitu.artifacts import ArtifactStore, load
from insitu.cli._explain import render_explain, render_why
from insitu.models import register
from insitu.store import ModelRecord, open_store
from pg_fixture import databases

SERVER_DBS = databases("sqlite")  # INSITU_TEST_ALL_DBS=1: both

PIPES = Path(__file__).parents[1] / "pipelines"
SERVED = str(PIPES / "served.py")
CASES = str(PIPES / "cli_cases.py")
P = "/api/v1/projects/default"


def insitu(s: Server, *args: str, cwd: Path | None = None,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real command, on the server's database and INSITU_HOME."""
    full = {**os.environ, "INSITU_HOME": str(s.home), "INSITU_DB_URL": s.db_url,
            "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "insitu", *args], capture_output=True,
                          text=True, timeout=600, env=full, cwd=cwd)


def _newest(s: Server, pipeline: str) -> str:
    runs = json.loads(insitu(s, "runs", "--json", "--pipeline", pipeline).stdout)
    return str(runs[0]["id"])


@dataclass
class World:
    s: Server
    outputs: str        # a run of served.py:outputs
    failed: str         # a run of cli_cases.py:two_failures
    study: str          # a run of served.py:study
    model: str
    dataset: str


@pytest.fixture(scope="module")
def world(server: Server, tmp_path_factory: pytest.TempPathFactory) -> World:
    s = server
    r = insitu(s, "run", f"{SERVED}:outputs", "--plain")
    assert r.returncode == 0, r.stdout + r.stderr
    outputs = _newest(s, "outputs")
    assert insitu(s, "run", f"{CASES}:two_failures", "--plain").returncode == 1
    failed = _newest(s, "two_failures")
    r = insitu(s, "run", f"{SERVED}:study", "--plain")
    assert r.returncode == 0, r.stdout + r.stderr
    study = _newest(s, "study")
    model = f"m-{uuid.uuid4().hex[:6]}"
    r = insitu(s, "models", "register", model, "--run", outputs, "--step", "fit",
               "--alias", "champion", "--tag", "team=vision")
    assert r.returncode == 0, r.stderr
    data = tmp_path_factory.mktemp("shards")
    for i in range(3):
        (data / f"part-{i}.csv").write_text(f"x\n{i}\n")
    dataset = f"d-{uuid.uuid4().hex[:6]}"
    r = insitu(s, "datasets", "add", dataset, str(data / "*.csv"))
    assert r.returncode == 0, r.stderr
    return World(s, outputs, failed, study, model, dataset)


def _get(w: World, path: str, **params: Any) -> Any:
    r = w.s.admin.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def _console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=200, highlight=False), buf


# -- steps, attempts, logs ------------------------------------------------------------------


def test_steps_and_attempts_are_what_show_prints(world: World) -> None:
    shown = json.loads(insitu(world.s, "show", world.failed, "--json").stdout)
    steps = _get(world, f"{P}/runs/{world.failed}/steps")
    fields = ("id", "state", "attempts", "node", "started_at", "ended_at", "error",
              "cached_from", "map_index", "pending_reason")
    assert [{k: x[k] for k in fields} for x in steps] == \
        [{k: t[k] for k in fields} for t in shown["tasks"]]
    assert {x["step"] for x in steps} == {"bad_lookup", "leaky"}
    for task in ("bad_lookup", "leaky"):
        att = _get(world, f"{P}/runs/{world.failed}/steps/{task}/attempts")
        assert att == [a for a in shown["attempts"] if a["task_id"] == task]
        assert att[0]["state"] == "failed" and att[0]["peak_memory"] > 0
    r = world.s.admin.get(f"{P}/runs/{world.failed}/steps/nope/attempts")
    assert r.status_code == 404 and "has no step 'nope'" in r.json()["detail"]


def test_log_ranges_reassemble_the_files_the_cli_prints(world: World) -> None:
    rid = world.outputs
    cli = insitu(world.s, "logs", rid, "table").stdout.splitlines()
    whole = {}
    for stream in ("stdout", "stderr"):
        full = _get(world, f"{P}/runs/{rid}/logs", step="table", stream=stream)
        assert full["offset"] == 0 and full["eof"] and full["ended"] and full["attempt"] == 1
        assert full["next_offset"] == full["size"] == len(full["text"].encode())
        whole[stream] = full["text"]
        prefix = "[table#1 stderr] " if stream == "stderr" else "[table#1] "
        assert full["text"].splitlines() == [x[len(prefix):] for x in cli
                                             if x.startswith(prefix)]
        parts, offset = [], 0
        while True:  # 3 bytes at a time: "é" is 2 bytes and is never cut in two
            r = _get(world, f"{P}/runs/{rid}/logs", step="table", stream=stream,
                     offset=offset, limit=3)
            assert r["offset"] == offset and "\ufffd" not in r["text"]
            parts.append(r["text"])
            assert r["next_offset"] > offset or r["eof"]
            offset = r["next_offset"]
            if r["eof"]:
                break
        assert "".join(parts) == full["text"]
    assert "making a table of 30 rows" in whole["stdout"]
    assert "héllo on stderr" in whole["stderr"]
    past = _get(world, f"{P}/runs/{rid}/logs", step="table", offset=10**6)
    assert past["text"] == "" and past["eof"]
    r = world.s.admin.get(f"{P}/runs/{rid}/logs", params={"step": "table", "attempt": 2})
    assert r.status_code == 404
    assert r.json()["detail"] == f"step table of run {rid} has 1 attempt(s), not 2"
    r = world.s.admin.get(f"{P}/runs/{rid}/logs", params={"step": "nope"})
    assert r.status_code == 404 and r.json()["hint"]
    r = world.s.admin.get(f"{P}/runs/{rid}/logs", params={"step": "table", "stream": "x"})
    assert r.status_code == 422


# -- explain and why ------------------------------------------------------------------------


@pytest.mark.parametrize("step", [None, "bad_lookup", "leaky"])
def test_explain_is_what_the_cli_prints(world: World, tmp_path: Path,
                                        step: str | None) -> None:
    """Rendered by the CLI's own renderer, the API's facts are the CLI's output (run from a
    folder above none of the files, where the CLI shows absolute paths too)."""
    args = [world.failed] + ([step] if step else [])
    cli = insitu(world.s, "explain", *args, cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr
    facts = _get(world, f"{P}/runs/{world.failed}/explain", **({"step": step} if step else {}))
    assert facts["failed"]
    console, buf = _console()
    for part in render_explain(facts):
        console.print(part)
    assert buf.getvalue() == cli.stdout
    if step == "bad_lookup":
        assert facts["cause"] == "KeyError: 'b'"
        assert facts["where"]["file"] == CASES and facts["where"]["line"] == 14
        assert facts["fix"].startswith(f"fix the code at {CASES}:14")
        assert [f["file"] for f in facts["frames"]["yours"]] == [CASES, CASES]
        assert facts["rerun"] == f"insitu run {CASES}:two_failures"
    if step is None:
        assert facts["failed_count"] == 2 and len(facts["also_failed"]) == 1


def test_explain_of_a_run_that_did_not_fail_and_why(world: World, tmp_path: Path) -> None:
    facts = _get(world, f"{P}/runs/{world.outputs}/explain")
    assert not facts["failed"]
    cli = insitu(world.s, "explain", world.outputs, cwd=tmp_path).stdout
    assert facts["message"] + "\n" == cli
    for args in ([], ["table"]):
        why = _get(world, f"{P}/runs/{world.outputs}/why",
                   **({"step": args[0]} if args else {}))
        console, buf = _console()
        for line in render_why(why):
            console.print(line)
        assert buf.getvalue() == insitu(world.s, "why", world.outputs, *args).stdout
    r = world.s.admin.get(f"{P}/runs/{world.outputs}/why", params={"step": "nope"})
    assert r.status_code == 404 and r.json()["detail"] == \
        f"run {world.outputs} has no step 'nope'"
    r = world.s.admin.get(f"{P}/runs/{world.outputs}/explain", params={"step": "nope"})
    assert r.status_code == 404


# -- artifacts, metrics ---------------------------------------------------------------------


def test_artifacts_metadata_download_and_preview(world: World) -> None:
    rid = world.outputs
    listed = _get(world, f"{P}/runs/{rid}/artifacts")
    by_step = {a["step"]: a for a in listed if a["source"] == "output"}
    assert set(by_step) == {"table", "notes", "picture", "numbers", "fit"}
    store = open_store(world.s.db_url)
    blobs = ArtifactStore(str(world.s.home / "artifacts"))
    tasks = {t.id: t for t in store.list_tasks(rid)}
    store.close()

    def value(step: str) -> Any:
        out = tasks[step].output
        assert out is not None
        return load(out, blobs, materialize_dir=str(world.s.home / "materialized"))

    url = f"{P}/runs/{rid}/artifacts"
    frame = value("table")
    t = by_step["table"]
    assert t["serializer"] == "parquet" and t["content_type"] == "application/vnd.apache.parquet"
    pv = _get(world, f"{url}/{t['digest']}/preview")
    assert pv["preview"] == "table" and pv["columns"] == ["i", "square", "name"]
    assert pv["total_rows"] == 30 and pv["rows"] == frame.head(20).values.tolist()
    notes = by_step["notes"]
    text = value("notes").read_text()
    pv = _get(world, f"{url}/{notes['digest']}/preview")
    assert pv["preview"] == "text" and pv["text"] == text and not pv["truncated"]
    r = world.s.admin.get(f"{url}/{notes['digest']}")
    assert r.status_code == 200 and r.text == text
    assert r.headers["content-type"].startswith("text/plain")
    assert 'filename="notes.txt"' in r.headers["content-disposition"]
    pic = by_step["picture"]
    pv = _get(world, f"{url}/{pic['digest']}/preview")
    assert pv["preview"] == "image" and pv["content_type"] == "image/png"
    r = world.s.admin.get(f"{url}/{pic['digest']}")
    assert r.content == value("picture").read_bytes() and r.headers["content-type"] == "image/png"
    pv = _get(world, f"{url}/{by_step['numbers']['digest']}/preview")
    assert pv["preview"] == "array" and pv["shape"] == [30, 1]
    assert pv["values"] == value("numbers").reshape(-1)[:20].tolist()
    fit = by_step["fit"]
    assert fit["kind"] == "inline"
    assert _get(world, f"{url}/{fit['digest']}/preview")["value"] == value("fit")
    assert world.s.admin.get(f"{url}/{fit['digest']}").json() == value("fit")
    r = world.s.admin.get(f"{url}/{'0' * 64}/preview")
    assert r.status_code == 404 and "has no artifact" in r.json()["detail"]
    other = _get(world, f"{P}/runs/{world.study}/artifacts")  # a digest of another run
    foreign = next(a["digest"] for a in other if a["digest"] not in
                   {x["digest"] for x in listed})
    assert world.s.admin.get(f"{url}/{foreign}").status_code == 404
    assert world.s.admin.get(f"{url}/not-a-digest").status_code == 422


def test_metrics_and_params_are_what_compare_shows(world: World) -> None:
    rid = world.outputs
    got = _get(world, f"{P}/runs/{rid}/metrics")
    rows = json.loads(insitu(world.s, "compare", rid, "--json").stdout)["rows"]
    assert got["params"] == {"n": 30, "lr": 0.25}
    (loss,) = [m for m in got["metrics"] if m["name"] == "loss"]
    assert loss["step"] == "fit" and loss["count"] == 4
    assert loss["last"] == rows["metric fit.loss"][0] == loss["points"][-1]["value"]
    assert loss["min"] == loss["last"] and loss["max"] == pytest.approx(0.75)
    assert got["step_params"] == [{"step": "fit", "params": {"lr": 0.25, "optimizer": "sgd"}}]
    assert rows["param fit.optimizer"] == ["sgd"]


# -- models, datasets, studies, cluster -----------------------------------------------------


def test_models_datasets_and_studies_are_what_the_cli_shows(world: World) -> None:
    s, name = world.s, world.model
    listed = {m["name"]: m for m in _get(world, f"{P}/models")}
    ls = {m["name"]: m for m in json.loads(insitu(s, "models", "ls", "--json").stdout)}
    for k in ("versions", "latest", "aliases", "description"):
        assert listed[name][k] == ls[name][k]
    got = _get(world, f"{P}/models/{name}")
    shown = json.loads(insitu(s, "models", "show", name, "--json").stdout)
    assert got["project"] == "default"
    assert [{k: v[k] for k in shown[0]} for v in got["versions"]] == shown
    (v1,) = got["versions"]
    assert v1["run_id"] == world.outputs and v1["step"] == "fit"
    assert v1["aliases"] == ["champion"] and v1["lineage"]["run_id"] == world.outputs
    assert _get(world, f"{P}/models/{name}/versions/1") == v1
    r = s.admin.get(f"{P}/models/{name}/versions/9")
    assert r.status_code == 404 and r.json()["detail"] == f"model {name!r} has no version 9"

    ds = {d["name"]: d for d in _get(world, f"{P}/datasets")}
    cli_ls = {d["name"]: d for d in json.loads(insitu(s, "datasets", "ls", "--json").stdout)}
    assert ds[world.dataset]["shards"] == cli_ls[world.dataset]["shards"] == 3
    assert ds[world.dataset]["bytes"] == cli_ls[world.dataset]["bytes"]
    assert ds[world.dataset]["nodes"] == ["local"]
    got = _get(world, f"{P}/datasets/{world.dataset}")
    cli_show = json.loads(insitu(s, "datasets", "show", world.dataset, "--json").stdout)
    assert [{k: x[k] for k in cli_show[0]} for x in got["shards"]] == cli_show

    studies = _get(world, f"{P}/studies")
    mine = [x for x in studies if x["run_id"] == world.study]
    assert [x["study"] for x in mine] == [f"{world.study}/bowl"]
    study = _get(world, f"{P}/runs/{world.study}/studies/bowl")
    assert study["trial_count"] == 3 and study["goal"] == "minimize"
    assert study["metric"] == "loss" and study["counts"] == {"complete": 3}
    text = insitu(s, "tune", "show", f"{world.study}/bowl").stdout
    best = study["best"]
    assert f"best trial {best['number']}: value {best['value']:.6g}" in text
    assert "3/3 trials ended: 3 complete" in text
    for t in study["trials"]:
        assert t["state"] == "complete" and t["duration"] is not None
    r = s.admin.get(f"{P}/runs/{world.outputs}/studies/fit")
    assert r.status_code == 404 and "no tuning step 'fit'" in r.json()["detail"]


def test_cluster_shows_this_servers_node(world: World) -> None:
    got = _get(world, "/api/v1/cluster")
    (node,) = [n for n in got["nodes"] if n["name"] == "local"]
    assert node["cpu"] > 0 and node["memory"] > 0 and node["source"] == "server"
    assert node["free"]["cpu"] == node["cpu"] - node["allocated"]["cpu"]
    assert isinstance(got["allocations"], list) and isinstance(got["pending"], list)


# -- isolation ------------------------------------------------------------------------------


def test_another_projects_objects_are_not_found(world: World) -> None:
    s = world.s
    project, user = f"p-{uuid.uuid4().hex[:6]}", f"u-{uuid.uuid4().hex[:6]}"
    assert s.admin.post("/api/v1/users", json={"name": user}).status_code == 201
    assert s.admin.post("/api/v1/projects",
                        json={"name": project, "owner": user}).status_code == 201
    token = s.admin.post("/api/v1/tokens", json={"user": user}).json()["token"]
    c = s.client(token)
    rid, name = world.outputs, world.model
    digest = _get(world, f"{P}/runs/{rid}/artifacts")[0]["digest"]
    under = ["/runs/{rid}/steps", "/runs/{rid}/steps/table/attempts",
             "/runs/{rid}/logs?step=table", "/runs/{rid}/logs/stream", "/runs/{rid}/explain",
             "/runs/{rid}/why", "/runs/{rid}/metrics", "/runs/{rid}/artifacts",
             "/runs/{rid}/artifacts/{digest}", "/runs/{rid}/artifacts/{digest}/preview",
             f"/runs/{world.study}/studies/bowl", "/models/{name}",
             "/models/{name}/versions/1", f"/datasets/{world.dataset}"]
    for tail in under:
        tail = tail.format(rid=rid, digest=digest, name=name)
        r = c.get(f"{P}{tail}")  # the project itself is hidden
        assert r.status_code == 404 and r.json()["detail"] == "no project 'default'", tail
        r = c.get(f"/api/v1/projects/{project}{tail}")  # and not reachable from theirs
        assert r.status_code == 404, tail
        assert "default" not in r.json()["detail"] + r.json().get("hint", ""), tail
    assert c.get(f"/api/v1/projects/{project}/models").json() == []
    assert c.get(f"/api/v1/projects/{project}/datasets").json() == []
    assert c.get(f"/api/v1/projects/{project}/studies").json() == []
    # a model registered from a run of their project is theirs alone, and its name is not
    # suggested to others
    store = open_store(s.db_url)
    run = store.get_run(rid)
    copy = f"{rid[:6]}{uuid.uuid4().hex[:6]}"
    store.put(dataclasses.replace(run, id=copy, project=project),
              *(dataclasses.replace(t, run_id=copy) for t in store.list_tasks(rid)))
    theirs = f"t-{uuid.uuid4().hex[:6]}"
    register(theirs, run=copy, step="fit", store=store)
    assert store.select(ModelRecord, name=theirs)[0].project == project
    # a name another project uses is free in theirs: a model of its own, the other untouched
    before = _get(world, f"{P}/models/{name}")["versions"]
    same = register(name, run=copy, step="fit", store=store)
    assert (same.version, same.record.project) == (1, project)
    store.close()
    assert [v["run_id"] for v in c.get(f"/api/v1/projects/{project}/models/{name}")
            .json()["versions"]] == [copy]
    assert _get(world, f"{P}/models/{name}")["versions"] == before
    assert sorted(m["name"] for m in c.get(f"/api/v1/projects/{project}/models").json()) == \
        sorted([theirs, name])
    got = c.get(f"/api/v1/projects/{project}/models/{theirs}").json()
    assert got["versions"][0]["run_id"] == copy
    assert theirs not in {m["name"] for m in _get(world, f"{P}/models")}
    r = s.admin.get(f"{P}/models/{theirs}")
    assert r.status_code == 404 and theirs[:-1] not in r.json()["hint"]


# -- logs, live -----------------------------------------------------------------------------


def _events(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    """(event, data) of a Server-Sent Events stream; comments as ("", text)."""
    name, data = "", []
    for line in lines:
        if line.startswith(":"):
            yield "", line[1:].strip()
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and name:
            yield name, json.loads("\n".join(data))
            name, data = "", []


def test_logs_stream_follows_a_running_run(server: Server) -> None:
    s = server
    env = {**os.environ, "INSITU_HOME": str(s.home), "INSITU_DB_URL": s.db_url}
    proc = subprocess.Popen([sys.executable, "-m", "insitu", "run", f"{SERVED}:chatty",
                             "-p", "lines=12", "-p", "pause=0.4", "--plain"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        rid = None
        while rid is None:  # wait until the run exists and talk is running
            assert time.monotonic() < deadline and proc.poll() is None
            items = s.admin.get(f"{P}/runs", params={"pipeline": "chatty"}).json()["items"]
            live = [r for r in items if r["state"] in ("pending", "running")]
            if live:
                steps = s.admin.get(f"{P}/runs/{live[0]['id']}/steps").json()
                if any(t["step"] == "talk" and t["state"] == "running" for t in steps):
                    rid = live[0]["id"]
            time.sleep(0.1)
        why = _get_client(s, f"{P}/runs/{rid}/why")
        waiting = {w["step"]: w for w in why["steps"]}
        assert waiting["after"]["kind"] == "inputs"
        assert waiting["after"]["inputs"] == [{"step": "talk", "state": "running"}]
        got: dict[tuple[str, str], str] = {}
        logs_events = 0
        end = None
        first_comment = None
        state_at_first = None
        with s.admin.stream("GET", f"{P}/runs/{rid}/logs/stream",
                            timeout=httpx.Timeout(300)) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            for name, data in _events(r.iter_lines()):
                if name == "" and first_comment is None:
                    first_comment = data
                elif name == "log":
                    if state_at_first is None:
                        state_at_first = s.admin.get(f"{P}/runs/{rid}").json()["state"]
                    if data["step"] == "talk" and data["stream"] == "stdout":
                        logs_events += 1
                    key = (data["step"], data["stream"])
                    got[key] = got.get(key, "") + data["text"]
                    assert data["attempt"] == 1
                elif name == "end":
                    end = data
                    break
        assert first_comment is not None and rid in first_comment
        assert state_at_first == "running"  # lines came while the run went on
        assert logs_events > 1              # in several pieces, as they were written
        assert end == {"state": "succeeded"}
        assert got[("talk", "stdout")] == "".join(f"line {i}\n" for i in range(12))
        assert got[("talk", "stderr")] == "".join(f"warning {i}\n" for i in range(0, 12, 3))
        assert got[("after", "stdout")] == "after 12\n"
        assert proc.wait(timeout=300) == 0
        cli = subprocess.run([sys.executable, "-m", "insitu", "logs", rid], env=env,
                             capture_output=True, text=True, timeout=120).stdout
        for (step, stream), text in got.items():
            prefix = f"[{step}#1{' stderr' if stream == 'stderr' else ''}] "
            assert [x[len(prefix):] for x in cli.splitlines() if x.startswith(prefix)] == \
                text.splitlines()
        # a run that has ended: everything at once, then the end; one step only
        with s.admin.stream("GET", f"{P}/runs/{rid}/logs/stream",
                            params={"step": "after"}) as r:
            events = list(_events(r.iter_lines()))
        assert [e for e in events if e[0]] == [
            ("log", {"step": "after", "attempt": 1, "stream": "stdout", "text": "after 12\n"}),
            ("end", {"state": "succeeded"})]
        r = s.admin.get(f"{P}/runs/{rid}/logs/stream", params={"step": "nope"})
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    finally:
        proc.kill()
        proc.wait()


def _get_client(s: Server, path: str) -> Any:
    r = s.admin.get(path)
    assert r.status_code == 200, r.text
    return r.json()
