"""Distributed steps on the local executor: real processes, real torch.distributed (gloo).

One fork server for the module (torch is imported once, then every rank is forked from
it); each test submits a pipeline of tests/pipelines/training.py to it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")

from insitu._config import load_config  # noqa: E402
from insitu.engine import Engine  # noqa: E402
from insitu.engine._explain import explain_facts, why_facts  # noqa: E402
from insitu.engine._paths import log_path  # noqa: E402
from insitu.executor import LocalExecutor  # noqa: E402
from insitu.executor._gang import rank_path  # noqa: E402
from insitu.sdk import compile_pipeline  # noqa: E402
from insitu.store import MetricRecord, open_store  # noqa: E402
from insitu.store import _records as S  # noqa: E402
from insitu.train import list_checkpoints  # noqa: E402

sys.path.insert(0, str(Path(__file__).parents[1] / "pipelines"))
import training  # noqa: E402


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("train-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("INSITU_HOME", str(home))
    mp.delenv("INSITU_DB_URL", raising=False)
    mp.delenv("INSITU_ARTIFACTS", raising=False)
    mp.setenv("INSITU_NODE_CPUS", "4")
    cfg = load_config()
    store = open_store(cfg.db_url)
    ex = LocalExecutor()
    try:
        yield {"cfg": cfg, "store": store, "engine": Engine(store, ex, config=cfg)}
    finally:
        ex.close()
        mp.undo()


def run_cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """The real ``insitu`` command, in a subprocess."""
    env = {**os.environ, "INSITU_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "insitu", *args], capture_output=True,
                          text=True, timeout=120, env=env)


def _run(world: dict[str, Any], pipeline: Any, **params: Any) -> S.RunRecord:
    engine: Engine = world["engine"]
    rec = engine.submit(compile_pipeline(pipeline, params, require=True), params)
    return engine.execute(rec.id)


def _attempts(world: dict[str, Any], run_id: str, task: str) -> list[S.AttemptRecord]:
    return sorted(world["store"].list_attempts(run_id, task), key=lambda a: a.number)


def _output(world: dict[str, Any], run_id: str, task: str) -> Any:
    from insitu.artifacts import ArtifactStore, load

    t = next(t for t in world["store"].list_tasks(run_id) if t.id == task)
    return load(t.output, ArtifactStore(world["cfg"].artifacts_url))


def _log(world: dict[str, Any], run_id: str, task: str, attempt: int, rank: int) -> str:
    p = rank_path(str(log_path(world["cfg"], run_id, task, attempt, "out")), rank)
    return Path(p).read_text()


def test_ddp_equals_single_process_and_a_killed_rank_resumes_from_its_checkpoint(
        world: dict[str, Any]) -> None:
    rec = _run(world, training.ddp_and_restart)
    assert rec.state == S.RUN_SUCCEEDED, rec.error
    ddp, single = _output(world, rec.id, "ddp_fit"), _output(world, rec.id, "single_fit")
    assert ddp["world"] == 2 and ddp["backend"] == "gloo"
    # 2 ranks on half the batch each, gradients averaged = one process on the whole batch
    for a, b in zip(ddp["weight"] + ddp["bias"], single["weight"] + single["bias"],
                    strict=True):
        assert a == pytest.approx(b, abs=1e-5)
    # both ranks stepped through every epoch, each with its own log
    for rank in (0, 1):
        lines = _log(world, rec.id, "ddp_fit", 1, rank).split("\n")
        assert [x for x in lines if x.startswith("epoch")] == \
            [f"epoch {e} rank {rank}" for e in range(training.EPOCHS)]
    (a,) = _attempts(world, rec.id, "ddp_fit")
    ranks = a.placement["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert all(r["state"] == "succeeded" and r["peak_memory"] > 0 for r in ranks)
    assert all(r["memory_limit"] == 1024**3 for r in ranks)
    names = {m.name for m in world["store"].select(MetricRecord, run_id=rec.id,
                                                    task_id="ddp_fit")}
    assert {"loss", "loss@rank1"} <= names  # metrics carry their rank

    # rank 1 was SIGKILLed after the checkpoint of epoch 1: the gang restarted from it
    first, second = _attempts(world, rec.id, "killed_fit")
    assert first.error["kind"] == "lost" and first.error["rank"] == 1
    assert "SIGKILL" in first.error["message"]
    assert {r["rank"]: r["state"] for r in first.placement["ranks"]} == \
        {0: "stopped", 1: "failed"}
    assert second.state == "succeeded"
    killed = _output(world, rec.id, "killed_fit")
    assert killed["start"] == 2
    for rank in (0, 1):  # no epoch before the checkpoint ran again
        again = [x for x in _log(world, rec.id, "killed_fit", 2, rank).split("\n")
                 if x.startswith("epoch")]
        assert again == [f"epoch {e} rank {rank}" for e in range(2, training.EPOCHS)]
    # and it ends where the uninterrupted run ended (model and optimiser restored)
    for x, y in zip(killed["weight"], ddp["weight"], strict=True):
        assert x == pytest.approx(y, abs=1e-6)
    kept = list_checkpoints(world["cfg"].artifacts_url, rec.id)
    assert [e["step"] for e in kept["killed_fit"]] == [2, 3]  # keep=2

    # in a pipeline like any step: run again, every step comes from the cache
    again = _run(world, training.ddp_and_restart)
    assert again.state == S.RUN_SUCCEEDED
    assert {t.id: t.state for t in world["store"].list_tasks(again.id)} == \
        {"ddp_fit": "cached", "killed_fit": "cached", "single_fit": "cached"}
    assert _output(world, again.id, "ddp_fit") == ddp

    # the CLI: one rank's logs, and the run's ranks and checkpoints
    home = world["cfg"].home
    out = run_cli("logs", rec.id, "killed_fit", "--rank", "1", "--attempt", "1", home=home)
    assert out.returncode == 0, out.stderr
    assert "[killed_fit#1 rank 1] epoch 1 rank 1" in out.stdout
    assert "rank 0" not in out.stdout.replace("[killed_fit#1 rank 1]", "")
    bad = run_cli("logs", rec.id, "killed_fit", "--rank", "2", home=home)
    assert bad.returncode == 2 and "ran 2 ranks (0 to 1), not rank 2" in bad.stderr
    # the API's log range (what the server, its CLI and its dashboard read) serves one rank
    from insitu.errors import NotFound
    from insitu.server import _reads

    def api_log(rank: int) -> str:
        got = _reads.log_range(world["store"], world["cfg"], rec.project, rec.id,
                               step="killed_fit", attempt=1, stream="stdout", offset=0,
                               limit=1 << 20, rank=rank)
        return str(got["text"])

    assert "epoch 1 rank 1" in api_log(1) and "rank 0" not in api_log(1)
    assert "epoch 1 rank 0" in api_log(0)
    with pytest.raises(NotFound, match="ran 2 ranks"):
        api_log(2)
    show = run_cli("show", rec.id, home=home)
    assert show.returncode == 0, show.stderr
    assert "ranks of distributed steps" in show.stdout and "checkpoints" in show.stdout
    assert "stopped because rank 1 failed" in show.stdout


def test_a_raising_rank_is_named_and_a_rank_over_its_memory_is_oom(
        world: dict[str, Any]) -> None:
    rec = _run(world, training.failing)
    assert rec.state == S.RUN_FAILED
    (a,) = _attempts(world, rec.id, "raising")  # a user error: not retried
    assert a.error["kind"] == "user" and a.error["rank"] == 1
    assert a.error["stopped_ranks"] == [0]
    facts = explain_facts(rec, world["store"], world["cfg"], "raising")
    assert facts["error"]["label"] == "ValueError: bad batch on rank 1"
    assert facts["where"]["file"].endswith("training.py")
    assert facts["where"]["code"] == 'raise ValueError("bad batch on rank 1")'
    assert "on rank 1 of 2, the first rank to fail; rank 0 was stopped because of it" in \
        facts["error"]["details"]
    assert facts["logs"].endswith("raising --rank 1")

    (g,) = _attempts(world, rec.id, "greedy")
    assert g.error["kind"] == "oom" and g.error["rank"] == 1
    assert g.error["memory_limit"] == 300 * 1024**2
    assert g.error["peak_memory"] >= 0.9 * 300 * 1024**2
    by_rank = {r["rank"]: r for r in g.placement["ranks"]}
    assert by_rank[1]["oom"] and not by_rank[0]["oom"]
    assert by_rank[0]["state"] == "stopped"


def test_restart_budget_exhausted_says_so(world: dict[str, Any]) -> None:
    rec = _run(world, training.exhausted)
    assert rec.state == S.RUN_FAILED
    attempts = _attempts(world, rec.id, "always_killed")
    assert len(attempts) == 2  # the first run and max_restarts=1 restart
    assert all(a.error["kind"] == "lost" and a.error["rank"] == 1 for a in attempts)
    task = next(t for t in world["store"].list_tasks(rec.id) if t.id == "always_killed")
    assert "killed by SIGKILL; the gang was already restarted 1 time (max_restarts=1)" in \
        task.error["message"]
    facts = explain_facts(rec, world["store"], world["cfg"])
    assert "on rank 1 of 2, the first rank to fail; rank 0 was stopped because of it" in \
        facts["error"]["details"]
    assert "@insitu.step(max_restarts=...)" in facts["fix"]


def test_a_hung_rank_past_the_collective_timeout_is_named(world: dict[str, Any]) -> None:
    rec = _run(world, training.hung)
    assert rec.state == S.RUN_FAILED
    (a,) = _attempts(world, rec.id, "hangs")
    assert a.error["kind"] == "lost" and a.error["rank"] == 1
    assert a.error["message"].startswith(
        "rank 1 did not take part in a collective (timeout 3s): rank 0 gave up waiting")
    task = next(t for t in world["store"].list_tasks(rec.id) if t.id == "hangs")
    assert "(max_restarts=0)" in task.error["message"]
    states = {r["rank"]: r["state"] for r in a.placement["ranks"]}
    assert states == {0: "failed", 1: "stopped"}


def test_a_gang_that_cannot_fit_waits_whole_and_why_says_so(
        world: dict[str, Any], tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    out: dict[str, Any] = {}
    th = threading.Thread(target=lambda: out.update(rec=_run(world, training.gang_waits,
                                                             gate=str(gate))))
    th.start()
    try:
        store = open_store(world["cfg"].db_url)
        deadline = time.time() + 120
        gang = None
        while time.time() < deadline:
            runs = [r for r in store.list_runs() if r.pipeline == "gang_waits"]
            if runs:
                tasks = {t.id: t for t in store.list_tasks(runs[0].id)}
                gang = tasks.get("small_gang")
                if gang is not None and gang.pending_reason and \
                        tasks["hold"].state == "running":
                    break
            time.sleep(0.05)
        assert gang is not None and gang.pending_reason
        assert "gang of 2 workers" in gang.pending_reason
        assert gang.attempts == 0 and store.list_attempts(runs[0].id, "small_gang") == []
        why = why_facts(store.get_run(runs[0].id), store, "small_gang")
        assert "gang of 2 workers does not fit" in str(why)
    finally:
        gate.touch()
        th.join(180)
    assert out["rec"].state == S.RUN_SUCCEEDED


def test_a_tuning_study_runs_each_trial_as_a_gang(world: dict[str, Any]) -> None:
    rec = _run(world, training.tuned)
    assert rec.state == S.RUN_SUCCEEDED, rec.error
    trials = [t for t in world["store"].list_tasks(rec.id) if t.map_index is not None]
    assert len(trials) == 2
    for t in trials:
        (a,) = _attempts(world, rec.id, t.id)
        assert [r["state"] for r in a.placement["ranks"]] == ["succeeded", "succeeded"]
        names = {m.name for m in world["store"].select(MetricRecord, run_id=rec.id,
                                                        task_id=t.id)}
        assert names == {"value", "value@rank1"}


def test_gangs_competing_for_the_same_gpus_never_deadlock(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three gangs of 2 workers x 1 GPU on 3 declared GPUs: one gang at a time holds two of
    them; a partial gang holding a GPU would leave the others waiting for ever."""
    monkeypatch.setenv("INSITU_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("INSITU_DB_URL", raising=False)
    monkeypatch.delenv("INSITU_ARTIFACTS", raising=False)
    monkeypatch.setenv("INSITU_NODE_CPUS", "4")
    monkeypatch.setenv("INSITU_NODE_GPUS", "T4:3")
    cfg = load_config()
    store = open_store(cfg.db_url)
    ex = LocalExecutor()
    try:
        rec = _run({"engine": Engine(store, ex, config=cfg)}, training.competing)
    finally:
        ex.close()
    assert rec.state == S.RUN_SUCCEEDED, rec.error
    trials = [t for t in store.list_tasks(rec.id) if t.map_index is not None]
    assert len(trials) == 3
    spans = []
    for t in trials:
        (a,) = store.list_attempts(rec.id, t.id)
        gpus = [g for r in a.placement["ranks"] for g in r["gpu_ids"]]
        assert len(gpus) == 2 and len(set(gpus)) == 2  # a GPU each, never shared
        spans.append((a.started_at, a.ended_at))
    spans.sort()
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end  # one gang at a time: never two partial gangs
