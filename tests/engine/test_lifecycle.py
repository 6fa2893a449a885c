"""The state machine end to end: retry budgets from stored attempts, cache hits that keep
what was logged, and one state for a run whose engine is gone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import insitu
from insitu.engine import Engine
from insitu.executor import LocalExecutor
from insitu.store import LoggedArtifact, MetricRecord, ParamRecord, open_store

sys.path.insert(0, str(Path(__file__).parents[1] / "pipelines"))
import lifecycle  # noqa: E402
import tracked  # noqa: E402

BASIC = str(Path(__file__).parents[1] / "pipelines" / "basic.py")


def test_a_lost_worker_uses_up_no_retry(home: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSITU_TEST_COUNTER", str(tmp_path / "counter"))
    run = insitu.run(lifecycle.lost_once)  # retries=0, and its first worker is killed
    assert run.output("dies_once") == "ran 2 times"
    first, second = run.attempts("dies_once")
    assert first.state == "failed" and (first.error or {})["kind"] == "lost"
    assert second.state == "succeeded"


def test_resume_gives_a_failed_task_a_fresh_retry_budget(home: Path) -> None:
    run = insitu.run(lifecycle.failing, raise_on_failure=False)
    assert [a.number for a in run.attempts("always_fails")] == [1, 2]  # retries=1
    store = open_store()
    assert store.list_tasks(run.id)[0].retries_from == 0
    ex = LocalExecutor()
    try:
        rec = Engine(store, ex).execute(run.id)  # what `insitu resume` does
    finally:
        ex.close()
    assert rec.state == "failed"
    assert [a.number for a in store.list_attempts(run.id)] == [1, 2, 3, 4]
    assert store.list_tasks(run.id)[0].retries_from == 2


def test_a_cache_hit_keeps_what_the_step_logged(home: Path, cli) -> None:  # type: ignore[no-untyped-def]
    first = insitu.run(tracked.tracked)
    again = insitu.run(tracked.tracked)
    fit = again.task("fit")
    assert fit.state == "cached" and fit.cached_from == f"{first.id}/fit"
    store = open_store()
    for cls in (MetricRecord, ParamRecord, LoggedArtifact):
        assert store.select(cls, run_id=again.id, task_id="fit"), cls.__name__
    show = cli("show", again.id)
    assert "val_acc" in show.stdout and "loss" in show.stdout, show.stdout
    rows = json.loads(cli("compare", first.id, again.id, "--json").stdout)["rows"]
    assert any(k.startswith("metric fit.") for k in rows)
    differ = {k: v for k, v in rows.items() if len({json.dumps(x) for x in v}) > 1}
    assert differ == {}, differ
    mv = insitu.models.register("m", run=again.id, step="fit", store=store)
    assert mv.lineage["step_params"] == {"lr": 0.1, "epochs": 5, "optimizer": "sgd"}


def _start(home: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "INSITU_HOME": str(home), "INSITU_NODE_CPUS": "1"}
    return subprocess.Popen([sys.executable, "-m", "insitu", *args, "--plain"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _killed_mid_run(home: Path) -> str:
    proc = _start(home, "run", f"{BASIC}:chain_of_sleeps", "-p", "n=4", "-p", "seconds=30")
    deadline = time.time() + 60
    while time.time() < deadline:
        if (home / "insitu.db").exists():
            store = open_store(f"sqlite:///{home / 'insitu.db'}")
            runs = store.list_runs()
            if runs and any(a.state == "running" for a in store.list_attempts(runs[0].id)):
                break
        time.sleep(0.1)
    else:
        proc.kill()
        raise AssertionError("no attempt started")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()  # type: ignore[union-attr]
    return runs[0].id


def test_a_run_whose_engine_was_killed_is_interrupted_everywhere(home: Path, cli) -> None:  # type: ignore[no-untyped-def]
    rid = _killed_mid_run(home)
    assert f"{rid}" in cli("runs").stdout and "interrupted" in cli("runs").stdout
    show = cli("show", rid)
    assert "interrupted" in show.stdout and "running" not in show.stdout, show.stdout
    as_json = json.loads(cli("show", rid, "--json").stdout)
    assert as_json["run"]["state"] == "interrupted"
    assert {t["state"] for t in as_json["tasks"]} <= {"pending", "succeeded", "interrupted"}
    assert json.loads(cli("runs", "--json").stdout)[0]["state"] == "interrupted"
    logs = cli("logs", rid, "-f", timeout=60)  # stops: nothing will write any more
    assert logs.returncode == 0, logs.stderr


def test_cancel_of_a_run_whose_engine_was_killed(home: Path, cli) -> None:  # type: ignore[no-untyped-def]
    rid = _killed_mid_run(home)
    r = cli("cancel", rid)
    assert r.returncode == 0 and "no engine was running it" in r.stdout, r.stdout + r.stderr
    store = open_store()
    assert store.get_run(rid).state == "cancelled"
    assert {a.state for a in store.list_attempts(rid)} == {"cancelled"}
    assert not {t.state for t in store.list_tasks(rid)} & {"pending", "running"}
    assert "is already cancelled" in cli("cancel", rid).stdout


def test_resume_runs_a_task_that_was_waiting_for_its_retry(home: Path, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    env = {**os.environ, "INSITU_HOME": str(home), "INSITU_TEST_COUNTER": str(counter)}
    target = f"{Path(lifecycle.__file__)}:long_backoff"
    proc = subprocess.Popen([sys.executable, "-m", "insitu", "run", target, "--plain"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while time.time() < deadline:  # its first attempt failed; it waits 600 s to retry
            if (home / "insitu.db").exists():
                store = open_store(f"sqlite:///{home / 'insitu.db'}")
                runs = store.list_runs()
                tasks = store.list_tasks(runs[0].id) if runs else []
                if tasks and tasks[0].not_before is not None:
                    break
            time.sleep(0.1)
        else:
            raise AssertionError("the step never failed its first attempt")
    finally:
        proc.kill()
        proc.wait()
    r = subprocess.run([sys.executable, "-m", "insitu", "resume", runs[0].id, "--plain"],
                       env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    task = store.list_tasks(runs[0].id)[0]
    assert task.state == "succeeded" and task.attempts == 2, task
    assert insitu.get_run(runs[0].id).output("fails_once_then_waits") == "ok after 2"


@pytest.fixture
def started(home: Path) -> Iterator[tuple[Any, Any]]:
    """A pending run and the engine's loop for it, made as an engine reads the run before
    its first write: (the loop, the pending run)."""
    from insitu.engine._engine import resolve_resources
    from insitu.engine._loop import RunLoop

    ex = LocalExecutor()
    try:
        engine = Engine(open_store(), ex)
        pending = engine.submit(lifecycle.failing.compile(), {})
        yield RunLoop(engine, pending, resources=resolve_resources, reopen=False), pending
    finally:
        ex.close()


def test_a_run_cancelled_while_its_engine_starts_stays_cancelled(
        started: tuple[Any, Any]) -> None:
    from insitu.engine import cancel_run

    loop, pending = started
    store = loop.store
    cancelled, driven = cancel_run(store, pending.id, wait_s=0)  # lands before its first write
    assert (cancelled.state, driven) == ("cancelled", False)
    assert loop.run().state == "cancelled"
    assert store.get_run(pending.id).state == "cancelled"
    assert store.list_attempts(pending.id) == []  # nothing was launched
    assert [t.state for t in store.list_tasks(pending.id)] == ["cancelled"]


def test_a_cancel_asked_while_its_engine_starts_is_kept(started: tuple[Any, Any]) -> None:
    from insitu.engine._moves import move, unchanged

    loop, pending = started
    # a cancel asked (as of a live engine) before this engine's first write
    assert loop.store.put_if(pending.id, unchanged(pending),
                             move(pending, cancel_requested=True))
    assert loop.run().state == "cancelled"
    assert loop.store.list_attempts(pending.id) == []
