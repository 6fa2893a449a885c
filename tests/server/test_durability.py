"""Durability of submitted runs: the server SIGKILLed at random moments (and sometimes its
engines with it) while 20 runs of 3 projects are in flight, started again each time: every
run completes, exactly once, and no finished step runs again. And two servers on one
PostgreSQL database: every run is executed by exactly one engine."""

from __future__ import annotations

import os
import random
import re
import secrets
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from remote import build_package, compile_spec, launch, start, wait_for, write_pipeline

from conftest import cli
from insitu.store import open_store
from pg_fixture import databases

PROJECTS = ("vision", "speech", "ranking")
RUNS = 20


Setup = tuple[str, dict[str, Any], bytes, str, Path]


def _setup(db_url: str, home: Path, tmp: Path, step_s: float = 0.2) -> Setup:
    init = cli(home, "server", "init", "--db", db_url)
    assert init.returncode == 0, init.stderr
    token = init.stdout.strip().splitlines()[-1]
    marks = tmp / "marks"
    marks.mkdir()
    root = tmp / "proj"
    spec = compile_spec(tmp / "client-home", write_pipeline(root, marks, sleep=step_s))
    data, digest = build_package(root)
    return token, spec, data, digest, marks


def _kill_tree(proc: subprocess.Popen[bytes], *, engines: bool) -> int:
    """SIGKILL the server (and, if ``engines``, every process it started: its engines,
    their fork servers and attempts, as when the machine goes down); return how many
    processes were killed."""
    victims = [proc.pid]
    if engines:
        try:
            victims += [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    return len(victims)


def _check_exactly_once(db_url: str, marks: Path, ids: set[str]) -> dict[str, int]:
    """Every run succeeded; every task has exactly one succeeded attempt and no failed one;
    a step's work was done once per attempt at most, and exactly once where it had one
    attempt. Returns counts for the report."""
    store = open_store(db_url)
    counts: Counter[str] = Counter()
    try:
        for rid in sorted(ids):
            run = store.get_run(rid)
            assert run.state == "succeeded", (rid, run.state, run.error)
            attempts = store.list_attempts(rid)
            by_task: dict[str, list[Any]] = {}
            for a in attempts:
                by_task.setdefault(a.task_id, []).append(a)
            done = Counter((marks / f"{rid}.marks").read_text().split())
            for t in store.list_tasks(rid):
                assert t.state == "succeeded", (rid, t.id, t.state)  # no cache: it ran
                atts = by_task.get(t.id, [])
                states = Counter(a.state for a in atts)
                assert states["succeeded"] == 1, (rid, t.id, states)
                assert set(states) <= {"succeeded", "lost"}, (rid, t.id, states)
                assert done[t.id] <= len(atts), (rid, t.id, done[t.id], len(atts))
                if len(atts) == 1:
                    assert done[t.id] == 1, (rid, t.id, done[t.id])
                counts["tasks"] += 1
                counts["lost attempts"] += states["lost"]
                counts["steps re-run after a lost attempt"] += max(0, done[t.id] - 1)
    finally:
        store.close()
    return dict(counts)


@pytest.mark.timeout(900)  # a server's start-up is slow on a loaded machine
@pytest.mark.parametrize("kind", databases("postgresql"))
def test_sigkilled_server_restarted_completes_every_run_exactly_once(
        kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    home = tmp_path / "home"
    home.mkdir()
    db_url = f"sqlite:///{home / 'server.db'}" if kind == "sqlite" else \
        request.getfixturevalue("postgres").create_database("k_" + secrets.token_hex(5))
    # steps long enough that some kills land while they run (their attempts are lost and run
    # again; finished ones never are)
    token, spec, data, digest, marks = _setup(db_url, home, tmp_path, step_s=0.5)
    args = ("--poll", "0.2", "--lease", "4", "--max-engines", "6")
    rng = random.Random(os.environ.get("INSITU_KILL_SEED", secrets.randbits(32)))
    proc, url = launch(db_url, home, *args)
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=auth, timeout=30) as c:
        for p in PROJECTS:
            assert c.post("/api/v1/projects", json={"name": p}).status_code == 201
            r = c.put(f"/api/v1/projects/{p}/packages/{digest}", content=data)
            assert r.status_code in (200, 201), r.text  # one package serves all three
    accepted: list[str] = []
    state = {"url": url}
    stop = threading.Event()

    def submit() -> None:  # keeps submitting, across kills, until 20 were accepted
        n = 0
        with httpx.Client(headers=auth, timeout=10) as client:
            while len(accepted) < RUNS and not stop.is_set():
                project = PROJECTS[n % len(PROJECTS)]
                try:
                    r = client.post(f"{state['url']}/api/v1/projects/{project}/runs",
                                    json={"spec": spec, "package": digest, "no_cache": True})
                except httpx.TransportError:
                    time.sleep(0.05)  # the server is down: try again
                    continue
                if r.status_code == 201:
                    accepted.append(r.json()["id"])
                    n += 1
                time.sleep(rng.uniform(0.0, 0.15))

    def up(url: str) -> bool:
        try:
            return httpx.get(f"{url}/api/v1/health", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    submitter = threading.Thread(target=submit)
    submitter.start()
    kills = killed_engines = 0
    try:
        while kills < 10 or len(accepted) < RUNS:
            if rng.random() < 0.2:  # at a random moment of its start-up
                time.sleep(rng.uniform(0.1, 3.0))
            else:                   # or at a random moment once it serves
                wait_for(lambda p=proc: up(state["url"]) or p.poll() is not None, 120,
                         "the server to answer")
                time.sleep(rng.uniform(0.1, 2.0))
            with_engines = rng.random() < 0.5
            n = _kill_tree(proc, engines=with_engines)
            kills += 1
            killed_engines += (n - 1) if with_engines else 0
            proc, state["url"] = start(db_url, home, *args)
            assert kills < 40, f"only {len(accepted)} runs accepted after {kills} kills"
        wait_for(lambda: up(state["url"]), 120, "the last server to answer")
        submitter.join(timeout=120)
        store = open_store(db_url)
        try:
            ids = {r.id for r in store.list_runs()}

            def all_ended() -> bool:
                return all(store.get_run(i).state in ("succeeded", "failed", "cancelled")
                           for i in ids)
            wait_for(all_ended, 240, "every run to end", every=0.5)
        finally:
            store.close()
    finally:
        stop.set()
        submitter.join(timeout=60)
        proc.terminate()
        proc.wait(timeout=60)
    assert set(accepted) <= ids  # every accepted submission was in the database
    assert len(accepted) == RUNS and len(ids) >= RUNS
    counts = _check_exactly_once(db_url, marks, ids)
    print(f"\nkill test ({kind}): {kills} kills ({killed_engines} engine processes killed along), "
          f"{len(accepted)} runs accepted, {len(ids)} in the database, all succeeded "
          f"once; {counts}")
    assert kills >= 10


@pytest.mark.timeout(900)
@pytest.mark.parametrize("servers", [2])
def test_two_servers_on_one_postgresql_run_each_run_with_one_engine(
        servers: int, tmp_path: Path, postgres: Any) -> None:
    db_url = postgres.create_database("two_" + secrets.token_hex(5))
    home = tmp_path / "home"  # one machine: both share its home (its artifacts)
    home.mkdir()
    token, spec, data, digest, marks = _setup(db_url, home, tmp_path)
    procs = [launch(db_url, home, "--poll", "0.1", "--lease", "8", "--max-engines", "6")
             for _ in range(servers)]
    auth = {"Authorization": f"Bearer {token}"}
    try:
        first = procs[0][1]
        assert httpx.put(f"{first}/api/v1/projects/default/packages/{digest}", content=data,
                         headers=auth).status_code == 201
        ids: list[str] = []
        for i in range(RUNS):
            url = procs[i % servers][1]
            r = httpx.post(f"{url}/api/v1/projects/default/runs", headers=auth,
                           json={"spec": spec, "package": digest, "no_cache": True}, timeout=30)
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        store = open_store(db_url)
        try:
            wait_for(lambda: all(store.get_run(i).state == "succeeded" for i in ids), 240,
                     "every run to succeed", every=0.5)
        finally:
            store.close()
    finally:
        for proc, _ in procs:
            proc.terminate()
            proc.wait(timeout=60)
    counts = _check_exactly_once(db_url, marks, set(ids))
    assert counts.get("lost attempts", 0) == 0
    engines: Counter[str] = Counter()
    servers_seen: set[str] = set()
    for rid in ids:  # each engine logs when it starts driving a run and when it ends
        log = (home / "engines" / f"{rid}.log").read_text()
        engines[rid] = len(re.findall(rf"run {rid} ended", log))
        servers_seen |= set(re.findall(rf"run {rid}: driving it as [^:]+:(\d+):", log))
    assert engines == Counter({rid: 1 for rid in ids})
    print(f"\ntwo servers: {len(ids)} runs, each driven and ended by exactly one engine; "
          f"engines were started by {len(servers_seen)} server processes")
