"""SIGKILL the engine at several instants; `insitu resume` must finish the run without
re-running any finished step and without losing any output."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from insitu.store import open_store

BASIC = str(Path(__file__).parents[1] / "pipelines" / "basic.py")


def _start(home: Path, marks: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "INSITU_HOME": str(home), "INSITU_TEST_MARKS": str(marks),
           "INSITU_NODE_CPUS": "1"}
    return subprocess.Popen([sys.executable, "-m", "insitu", *args, "--plain"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _marks(p: Path) -> collections.Counter[str]:
    return collections.Counter(p.read_text().splitlines() if p.exists() else [])


def _wait_for_run(home: Path):  # type: ignore[no-untyped-def]
    deadline = time.time() + 180  # a busy machine takes long to start Python
    while time.time() < deadline:
        if (home / "insitu.db").exists():
            store = open_store(f"sqlite:///{home / 'insitu.db'}")
            if store.list_runs():
                return store
        time.sleep(0.02)
    raise AssertionError("the run was never recorded")


@pytest.mark.parametrize("kill_after", [0.0, 0.7, 1.4, 2.2])
def test_sigkill_then_resume_runs_nothing_twice(home: Path, tmp_path: Path,
                                                kill_after: float) -> None:
    marks = tmp_path / "marks"
    proc = _start(home, marks, "run", f"{BASIC}:chain_of_sleeps", "-p", "n=8",
                  "-p", "seconds=0.5")
    store = _wait_for_run(home)
    time.sleep(kill_after)  # counted from the moment the run is recorded
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.3)  # let the fork server notice and stop its children
    run = store.list_runs()[0]
    assert run.state in ("pending", "running"), "the kill must land mid-run"
    done_before = {t.id: t.output for t in store.list_tasks(run.id)
                   if t.state in ("succeeded", "cached") and t.map_size is None}
    marks_before = _marks(marks)

    resumed = _start(home, marks, "resume", run.id)
    out, _ = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, out

    final = store.get_run(run.id)
    assert final.state == "succeeded"
    tasks = {t.id: t for t in store.list_tasks(run.id)}
    for tid, output in done_before.items():
        assert tasks[tid].output == output, f"output of finished {tid} changed"
    after = _marks(marks)
    for tid in done_before:
        name = f"slow:{tid[5:-1]}" if tid.startswith("many[") else (
            "slow:0" if tid == "slow" else tid)
        if tid.startswith(("many[", "slow")):
            assert after[name] == marks_before[name], f"finished {tid} ran again"
    assert tasks["collect-2"].output["value"] == 8  # type: ignore[index]
    assert [json.loads(json.dumps(tasks[f"many[{i}]"].output))["value"] for i in range(8)] == \
        list(range(8))
    lost = [a for a in store.list_attempts(run.id) if a.state == "lost"]
    assert all(a.error and a.error["kind"] == "lost" for a in lost)


def test_kill_during_resume_then_resume_again(home: Path, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    proc = _start(home, marks, "run", f"{BASIC}:chain_of_sleeps", "-p", "n=6",
                  "-p", "seconds=0.6")
    store = _wait_for_run(home)
    time.sleep(0.8)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    rid = store.list_runs()[0].id
    time.sleep(0.3)
    again = _start(home, marks, "resume", rid)
    time.sleep(1.5)
    os.kill(again.pid, signal.SIGKILL)
    again.wait()
    time.sleep(0.3)
    final = _start(home, marks, "resume", rid)
    out, _ = final.communicate(timeout=120)
    assert final.returncode == 0, out
    assert store.get_run(rid).state == "succeeded"
    m = _marks(marks)
    assert all(m[f"slow:{i}"] >= 1 for i in range(6))


def test_resume_refuses_a_run_that_is_still_running(home: Path, tmp_path: Path) -> None:
    proc = _start(home, tmp_path / "m", "run", f"{BASIC}:chain_of_sleeps", "-p", "n=4",
                  "-p", "seconds=2")
    try:
        store = open_store(f"sqlite:///{home / 'insitu.db'}")
        deadline = time.time() + 20
        while not store.list_runs() and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)
        rid = store.list_runs()[0].id
        r = subprocess.run([sys.executable, "-m", "insitu", "resume", rid], capture_output=True,
                           text=True, env={**os.environ, "INSITU_HOME": str(home)})
        assert r.returncode == 2 and "still being run by process" in r.stderr
    finally:
        proc.kill()
        proc.wait()


def _wait_for_running_attempt(home: Path):  # type: ignore[no-untyped-def]
    store = _wait_for_run(home)
    deadline = time.time() + 180
    while time.time() < deadline:
        if any(a.state == "running" for a in store.list_attempts(store.list_runs()[0].id)):
            return store
        time.sleep(0.1)
    raise AssertionError("no attempt started")


def test_cancel_stops_a_live_run(home: Path, tmp_path: Path) -> None:
    proc = _start(home, tmp_path / "m", "run", f"{BASIC}:chain_of_sleeps", "-p", "n=4",
                  "-p", "seconds=20")
    store = _wait_for_running_attempt(home)
    rid = store.list_runs()[0].id
    r = subprocess.run([sys.executable, "-m", "insitu", "cancel", rid], capture_output=True,
                       text=True, env={**os.environ, "INSITU_HOME": str(home)}, timeout=120)
    assert r.returncode == 0, r.stderr
    proc.wait(timeout=120)  # uncancelled, its four 20 s steps would end in success
    assert proc.returncode == 130
    assert store.get_run(rid).state == "cancelled"
    assert all(a.state != "running" for a in store.list_attempts(rid))


def test_ctrl_c_cancels(home: Path, tmp_path: Path) -> None:
    # the steps sleep far longer than the wait below: a lost Ctrl-C cannot pass unseen
    proc = _start(home, tmp_path / "m", "run", f"{BASIC}:chain_of_sleeps", "-p", "n=4",
                  "-p", "seconds=600")
    try:
        store = _wait_for_running_attempt(home)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 130, out
    rid = store.list_runs()[0].id
    assert store.get_run(rid).state == "cancelled"
    assert "insitu resume" in out


def test_sigterm_cancels(home: Path, tmp_path: Path) -> None:
    proc = _start(home, tmp_path / "m", "run", f"{BASIC}:chain_of_sleeps", "-p", "n=4",
                  "-p", "seconds=600")
    try:
        store = _wait_for_running_attempt(home)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 130, out
    rid = store.list_runs()[0].id
    assert store.get_run(rid).state == "cancelled"
    assert all(a.state != "running" for a in store.list_attempts(rid))
