"""Quotas on real runs: one engine process per run (as the server starts them), steps that hold
their CPU until the test creates a file, admission decided through the shared database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from insitu.engine import bind_params
from insitu.sdk import compile_pipeline, load_pipeline
from insitu.server._submit import run_records
from insitu.store import QuotaRecord, SQLStore, open_store
from pg_fixture import databases

HOLD = str(Path(__file__).parents[1] / "pipelines" / "holding.py")


class Runs:
    """Runs of several projects, each driven by its own `insitu resume` process."""

    def __init__(self, home: Path, tmp: Path, url: str) -> None:
        self.home, self.tmp, self.url = home, tmp, url
        self.store: SQLStore = open_store(url)
        self.procs: list[subprocess.Popen[str]] = []
        (tmp / "gates").mkdir()
        # a declared inventory: 16 CPUs and 8 A100 (the GPUs are never used by the steps)
        self.env = {**os.environ, "INSITU_HOME": str(home), "INSITU_DB_URL": url,
                    "INSITU_NODE_CPUS": "16", "INSITU_NODE_MEMORY": "16GiB",
                    "INSITU_NODE_GPUS": "A100:8"}

    def quota(self, project: str, cpu: float | None = None, *, cohort: str | None = None,
              lend: float | None = None, borrow: float | None = None,
              **other: float) -> None:
        q = {"cpu": cpu} if cpu is not None else dict(other)
        key = "cpu" if cpu is not None else next(iter(other), "cpu")
        self.store.put(QuotaRecord(
            project=project, quota=q, cohort=cohort,
            lending_limit={} if lend is None else {key: lend},
            borrowing_limit={} if borrow is None else {key: borrow}, updated_at=time.time()))

    def gate(self, name: str) -> str:
        return str(self.tmp / "gates" / name)

    def start(self, pipeline: str, project: str, labels: dict[str, Any] | None = None,
              **params: Any) -> str:
        spec = compile_pipeline(load_pipeline(f"{HOLD}:{pipeline}"), params)
        run, tasks = run_records(spec, bind_params(spec, params), project=project,
                                 backend="local", labels=labels)
        self.store.put(run, *tasks)
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "insitu", "resume", run.id, "--plain"], env=self.env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        return run.id

    def starts(self, gate: str) -> int:
        p = Path(f"{gate}.started")
        return len(p.read_text().splitlines()) if p.exists() else 0

    def release(self, gate: str) -> None:
        Path(gate).touch()

    def reason(self, run_id: str, task: str = "hold") -> str | None:
        ts = {t.id: t for t in self.store.list_tasks(run_id)}
        return ts[task].pending_reason if task in ts else None

    def state(self, run_id: str) -> str:
        return self.store.get_run(run_id).state

    def finish(self) -> None:
        """Every engine ends (each run succeeded) within the timeout."""
        for p in self.procs:
            out, _ = p.communicate(timeout=180)
            assert p.returncode == 0, out

    def close(self) -> None:
        for p in self.procs:  # only the engines this test started, by their pid
            if p.poll() is None:
                os.kill(p.pid, signal.SIGTERM)
                try:
                    p.communicate(timeout=60)
                except subprocess.TimeoutExpired:
                    os.kill(p.pid, signal.SIGKILL)
                    p.communicate()
        self.store.close()


def until(cond: Callable[[], Any], what: str, timeout: float = 180) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting until {what}")


@pytest.fixture(params=databases("sqlite"))
def runs(request: pytest.FixtureRequest, home: Path, tmp_path: Path) -> Iterator[Runs]:
    if request.param == "sqlite":
        url = f"sqlite:///{home / 'insitu.db'}"
    else:
        import secrets

        url = request.getfixturevalue("postgres").create_database("q_" + secrets.token_hex(6))
    r = Runs(home, tmp_path, url)
    try:
        yield r
    finally:
        r.close()


def test_a_project_at_its_quota_waits_and_proceeds_when_capacity_frees(runs: Runs) -> None:
    runs.quota("vision", cpu=2)
    ga, gb = runs.gate("a"), runs.gate("b")
    a = runs.start("two_cpu", "vision", gate=ga)
    until(lambda: runs.starts(ga) == 1, "run a's step starts")
    b = runs.start("one", "vision", gate=gb)
    want = ("project vision uses 2 of its 2 CPU and the step asks for 1 more; it is in no "
            "cohort, so it cannot borrow")
    until(lambda: runs.reason(b) == want, "run b's step waits, naming the quota")
    assert runs.starts(gb) == 0
    why = subprocess.run([sys.executable, "-m", "insitu", "why", b, "hold"], text=True,
                         capture_output=True, timeout=120, env={**runs.env, "COLUMNS": "300"})
    assert why.returncode == 0, why.stderr
    assert want in " ".join(why.stdout.split()), why.stdout
    runs.release(ga)
    until(lambda: runs.starts(gb) == 1, "run b's step starts once run a's ends")
    runs.release(gb)
    runs.finish()
    assert runs.state(a) == runs.state(b) == "succeeded"
    with runs.store.exclusive() as tx:
        assert tx.claims() == []  # nothing is left counted


def test_borrowing_within_a_cohort_up_to_the_lending_limit(runs: Runs) -> None:
    runs.quota("vision", cpu=1, cohort="research")
    runs.quota("nlp", cpu=2, cohort="research", lend=1)
    gates = [runs.gate(f"v{i}") for i in range(3)]
    v = runs.start("many", "vision", gates=gates)
    until(lambda: runs.starts(gates[0]) == 1 and runs.starts(gates[1]) == 1,
          "two of vision's items run: one in its quota, one borrowed from nlp")
    want = ("project vision uses 2 of its 1 CPU and the step asks for 1 more; cohort "
            "research has 2 idle CPU it may borrow, limited to 1 by its lending limit, of "
            "which 1 is already borrowed")
    until(lambda: runs.reason(v, "hold[2]") == want, "the third waits, naming the limit")
    assert runs.starts(gates[2]) == 0
    runs.release(gates[0])
    until(lambda: runs.starts(gates[2]) == 1, "the third starts once one ends")
    for g in gates:
        runs.release(g)
    runs.finish()
    assert runs.state(v) == "succeeded"


def test_reclaim_preempts_restartable_borrowed_work_which_then_retries(runs: Runs) -> None:
    runs.quota("vision", cpu=1, cohort="research")
    runs.quota("nlp", cpu=1, cohort="research")
    gf, gr, gn = runs.gate("firm"), runs.gate("restartable"), runs.gate("nlp")
    f = runs.start("firm", "vision", gate=gf)  # no retries: not restartable
    until(lambda: runs.starts(gf) == 1, "vision's first step runs (its own quota)")
    r = runs.start("one", "vision", gate=gr)  # retries=1: restartable, borrows nlp's CPU
    until(lambda: runs.starts(gr) == 1, "vision's second step runs on borrowed quota")
    n = runs.start("one", "nlp", gate=gn)  # within nlp's own quota: reclaims
    until(lambda: runs.starts(gn) == 1, "nlp's step starts, reclaiming its quota")
    atts = until(lambda: [a for a in runs.store.list_attempts(r) if a.ended_at],
                 "the borrowed step's attempt ends")
    assert atts[0].error is not None and atts[0].error["kind"] == "lost"
    assert atts[0].error["message"] == ("preempted: project nlp reclaims the capacity project "
                                        "vision borrowed in cohort research")
    assert runs.starts(gf) == 1  # the firm step was not touched
    until(lambda: (runs.reason(r) or "").startswith("project vision uses 1 of its 1 CPU"),
          "the preempted step waits for quota again")
    runs.release(gn)
    until(lambda: runs.starts(gr) == 2, "the preempted step runs again once nlp's ends")
    runs.release(gr)
    runs.release(gf)
    runs.finish()
    assert [runs.state(x) for x in (f, r, n)] == ["succeeded"] * 3
    assert [a.state for a in runs.store.list_attempts(r)] == ["failed", "succeeded"]


def test_drf_between_the_projects_of_a_cohort(runs: Runs) -> None:
    runs.quota("vision", cpu=1, cohort="c")
    runs.quota("nlp", cpu=1, cohort="c")
    runs.quota("pool", cpu=3, cohort="c")   # idle: lends all of its 3 CPU
    vg = [runs.gate(f"v{i}") for i in range(4)]
    runs.start("many", "vision", gates=vg)  # 1 in its quota + 3 borrowed: the cohort is full
    until(lambda: all(runs.starts(g) == 1 for g in vg), "vision's four items run")
    gn = runs.gate("n")
    runs.start("one", "nlp", gate=gn)       # nlp's own quota
    until(lambda: runs.starts(gn) == 1, "nlp's first step runs")
    gvw, gnw = runs.gate("vw"), runs.gate("nw")
    vw = runs.start("one", "vision", gate=gvw)
    until(lambda: runs.reason(vw), "vision's extra step waits (older)")
    nw = runs.start("one", "nlp", gate=gnw)
    until(lambda: runs.reason(nw), "nlp's extra step waits (newer)")
    runs.release(vg[0])  # one CPU frees: nlp has the smaller dominant share (1/5 < 3/5)
    until(lambda: runs.starts(gnw) == 1, "nlp's waiting step starts first")
    assert runs.starts(gvw) == 0
    assert (runs.reason(vw) or "").startswith("project vision uses 3 of its 1 CPU")
    for g in [*vg, gn, gnw, gvw]:
        runs.release(g)
    runs.finish()


def test_the_why_of_a_step_over_its_gpu_quota(runs: Runs) -> None:
    runs.quota("vision", cohort="research", **{"gpu:A100": 4})
    runs.quota("nlp", cohort="research", lend=1, **{"gpu:A100": 2})
    gates = [runs.gate(f"g{i}") for i in range(4)]
    runs.start("a100s", "vision", gates=gates)
    until(lambda: all(runs.starts(g) == 1 for g in gates), "vision's four A100 steps run")
    g2 = runs.gate("two")
    r = runs.start("two_a100", "vision", gate=g2)
    want = ("project vision uses 4 of its 4 A100 and the step asks for 2 more; cohort "
            "research has 2 idle A100 it may borrow, limited to 1 by its lending limit")
    until(lambda: runs.reason(r) == want, "the step asking for 2 more A100 waits")
    why = subprocess.run([sys.executable, "-m", "insitu", "why", r, "hold"], text=True,
                         capture_output=True, timeout=120, env={**runs.env, "COLUMNS": "300"})
    assert want in " ".join(why.stdout.split()), why.stdout
    runs.release(gates[0])
    runs.release(gates[1])  # vision uses 2 of its 4: the step fits in its own quota
    until(lambda: runs.starts(g2) == 1, "the step starts once two A100 free")
    for g in [*gates, g2]:
        runs.release(g)
    runs.finish()


def test_engines_never_admit_past_the_quota_together(runs: Runs) -> None:
    runs.quota("vision", cpu=1)
    gates = [runs.gate(f"r{i}") for i in range(4)]
    ids = [runs.start("one", "vision", gate=g) for g in gates]  # four engines at once
    for left in range(4, 0, -1):
        running = until(lambda: [g for g in gates if runs.starts(g) and not Path(g).exists()],
                        "one step runs")
        others = [i for i, g in zip(ids, gates, strict=True) if not runs.starts(g)]
        until(lambda others=others: all(
            (runs.reason(i) or "").startswith("project vision uses 1 of its 1 CPU")
            for i in others), "every other engine was refused by a pass")
        assert len(running) == 1 and len(others) == left - 1
        runs.release(running[0])
    runs.finish()


def test_a_higher_priority_run_is_admitted_first(runs: Runs) -> None:
    runs.quota("vision", cpu=1)
    ga, gl, gh = runs.gate("a"), runs.gate("low"), runs.gate("high")
    runs.start("one", "vision", gate=ga)
    until(lambda: runs.starts(ga) == 1, "the first run holds the quota")
    low = runs.start("one", "vision", gate=gl)
    until(lambda: runs.reason(low), "the low-priority run waits")
    high = runs.start("one", "vision", labels={"priority": 5}, gate=gh)
    until(lambda: runs.reason(high), "the high-priority run waits")
    runs.release(ga)
    until(lambda: runs.starts(gh) == 1, "the high-priority run starts first")
    assert runs.starts(gl) == 0
    runs.release(gh)
    until(lambda: runs.starts(gl) == 1, "then the low-priority one")
    runs.release(gl)
    runs.finish()


def test_engines_sharing_a_machine_never_hand_out_the_same_gpu(runs: Runs) -> None:
    """No quota anywhere: two runs, each with its own engine, on one machine with 2 A100.
    The first run's two steps hold both; the second run's step waits (and says why) until
    one is free, then gets exactly that one."""
    runs.env["INSITU_NODE_GPUS"] = "A100:2"
    a = [runs.gate(f"a{i}") for i in range(2)]
    first = runs.start("a100s", "alpha", gates=a)
    until(lambda: all(runs.starts(g) for g in a), "the first run holds both A100")
    b = runs.gate("b")
    second = runs.start("a100s", "beta", gates=[b])
    why = until(lambda: runs.reason(second, "hold[0]"), "the second run's step says why")
    assert "GPU" in why or "A100" in why, why
    assert runs.starts(b) == 0 and runs.state(second) == "running"
    # the server's cluster view shows it waiting, with what it asks for and why
    from insitu.server._access import Principal
    from insitu.server._cluster import cluster

    admin = Principal(user="admin", admin=True, token="t", scope=None, roles={})
    waiting = [p for p in cluster(runs.store, admin)["pending"] if p["run_id"] == second]
    assert [(p["task_id"], p["gpu"], p["gpu_type"]) for p in waiting] == [
        ("hold[0]", 1.0, "A100")]
    assert waiting[0]["reason"] == why
    runs.release(a[1])
    until(lambda: runs.starts(b), "the second run's step starts on the freed A100")

    def gpus(run_id: str, task: str) -> list[int]:
        att = runs.store.list_attempts(run_id, task)[-1]
        return list((att.placement or {})["gpu_ids"])

    assert gpus(second, "hold[0]") == gpus(first, "hold[1]")
    assert gpus(second, "hold[0]") != gpus(first, "hold[0]")
    runs.release(a[0])
    runs.release(b)
    runs.finish()
    assert runs.state(first) == runs.state(second) == "succeeded"


def test_steps_are_placed_around_the_servers_endpoints(runs: Runs) -> None:
    """An endpoint the server runs (its status, as the server's endpoint runner records it)
    holds the machine's one A100: a run's GPU step waits for it, and starts once it is gone."""
    import socket

    from insitu.executor._local import LOCAL_NODE
    from insitu.store import EndpointStatusRecord

    runs.env["INSITU_NODE_GPUS"] = "A100:1"
    held = EndpointStatusRecord(
        project="alpha", name="fraud", state="running", node=LOCAL_NODE,
        placement={"node": LOCAL_NODE, "cpu": 1.0, "memory": 2**30, "gpus": [0],
                   "gpu_milli": 1000},
        pid=os.getpid(), updated_at=time.time(), by=f"{socket.gethostname()}:{os.getpid()}")
    runs.store.put(held)
    g = runs.gate("g")
    run = runs.start("a100s", "beta", gates=[g])
    why = until(lambda: runs.reason(run, "hold[0]"), "the step says why it waits")
    assert "GPU" in why, why
    assert runs.starts(g) == 0
    runs.store.delete(EndpointStatusRecord, project="alpha", name="fraud")
    until(lambda: runs.starts(g), "the step starts once the endpoint is gone")
    runs.release(g)
    runs.finish()
    assert runs.state(run) == "succeeded"
