"""Memory limits count resident memory, not address space; an attempt stopped at its
limit is reported with its peak, the limit, how it was enforced and what it was
allocating. Run with each enforcement this machine allows (a cgroup, the watchdog)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from insitu._units import parse_memory
from insitu.engine._outcome import classify
from insitu.errors import UserError
from insitu.executor import AttemptExit, LocalExecutor
from insitu.executor._memory import MemoryEnforcer
from insitu.testing.executor_conformance import request, wait_all

STEPS = Path(__file__).parents[1] / "pipelines" / "memory_steps.py"
MIB = 1024**2
GIB = 1024**3


def fn(name: str) -> dict[str, Any]:
    return {"module": None, "file": str(STEPS), "qualname": name, "fingerprint": "x"}


@pytest.fixture(params=["auto", "watchdog"])
def executor(request: pytest.FixtureRequest) -> Iterator[LocalExecutor]:
    mode = request.param
    if mode == "auto" and MemoryEnforcer().mode == "watchdog":
        pytest.skip("this machine allows no memory cgroup (the watchdog case covers it)")
    ex = LocalExecutor(memory_enforcement=mode)
    yield ex
    ex.close()


def launch(ex: LocalExecutor, tmp: Path, key: str, name: str, limit: str | None,
           **args: Any) -> None:
    ex.launch(request(tmp, ex, key, name, args, function=fn(name),
                      memory_limit=parse_memory(limit) if limit else None))


def expected_mode(ex: LocalExecutor) -> set[str]:
    return {"watchdog"} if ex._memory == "watchdog" else {"cgroup-v1", "cgroup-v2"}


def test_reserved_address_space_does_not_count(executor: LocalExecutor, tmp_path: Path) -> None:
    """~400 MiB resident in a 4 GiB private mapping, under a 512 MiB limit: it succeeds."""
    launch(executor, tmp_path, "big", "reserve_and_hold", "512MiB",
           resident_mib=400, reserve_gib=4, seconds=1.0)
    ex = wait_all(executor, {"big"}, timeout=120)["big"]
    assert ex.result is not None and ex.result["ok"], (ex, (tmp_path / "logs/big.err").read_text())
    assert not ex.oom_killed
    assert ex.memory_enforcement in expected_mode(executor)
    assert ex.peak_memory is not None and 350 * MIB < ex.peak_memory <= 512 * MIB
    assert classify(ex, memory_limit=512 * MIB, timeout=None) is None


def test_touching_more_than_the_limit_stops_it_and_not_its_neighbour(
        executor: LocalExecutor, tmp_path: Path) -> None:
    launch(executor, tmp_path, "hog", "touch", "512MiB", mib=1024)
    launch(executor, tmp_path, "ok", "reserve_and_hold", "512MiB",
           resident_mib=64, reserve_gib=1, seconds=2.0)
    got = wait_all(executor, {"hog", "ok"}, timeout=120)
    hog, ok = got["hog"], got["ok"]
    assert ok.result is not None and ok.result["ok"] and not ok.oom_killed
    assert hog.oom_killed and hog.result is None
    assert hog.memory_enforcement in expected_mode(executor)
    err = classify(hog, memory_limit=512 * MIB, timeout=None)
    assert err is not None and err["kind"] == "oom"
    assert err["memory_limit"] == 512 * MIB and err["enforcement"] == hog.memory_enforcement
    assert err["peak_memory"] and 400 * MIB < err["peak_memory"] < 700 * MIB
    assert parse_memory(err["suggested_memory"]) >= 1 * GIB
    assert "stopped at its memory limit" in (tmp_path / "logs" / "hog.err").read_text()


def test_a_large_allocation_is_named_and_the_suggestion_covers_it(
        executor: LocalExecutor, tmp_path: Path) -> None:
    launch(executor, tmp_path, "np", "ones", "512MiB", gib=2)
    ex = wait_all(executor, {"np"}, timeout=120)["np"]
    err = classify(ex, memory_limit=512 * MIB, timeout=None)
    assert err is not None and err["kind"] == "oom", err
    assert err["failed_allocation"] is not None and err["failed_allocation"] >= 2 * GIB
    assert "2.0 GiB" in err["message"] and "512.0 MiB" in err["message"]
    assert parse_memory(err["suggested_memory"]) >= 2.5 * GIB
    assert err["suggested_memory"] in err["hint"]


def test_a_memory_error_with_a_size_is_parsed() -> None:
    """numpy's own message (a MemoryError raised before any limit was hit) names the size."""
    from insitu.executor._worker import failed_allocation

    msg = "Unable to allocate 2.00 GiB for an array with shape (268435456,) and data type float64"
    assert failed_allocation(msg) == 2 * GIB
    assert failed_allocation("out of memory") is None
    ex = AttemptExit(key="k", pid=1, exit_code=0, signal=None, peak_memory=40 * MIB,
                     cpu_time=0.1, started_at=0, ended_at=1, memory_enforcement="watchdog",
                     result={"ok": False, "error": {"kind": "oom", "type": "MemoryError",
                                                    "message": msg,
                                                    "failed_allocation": 2 * GIB}})
    err = classify(ex, memory_limit=512 * MIB, timeout=None)
    assert err is not None and msg in err["message"]
    assert parse_memory(err["suggested_memory"]) >= 2 * GIB + 40 * MIB


def test_a_failing_steps_traceback_is_in_its_stderr_log(tmp_path: Path) -> None:
    """A KeyError raised inside pandas from the user's helper: the traceback is in the
    attempt's .err file; the error names the user's line, library frames are marked."""
    ex = LocalExecutor()
    try:
        launch(ex, tmp_path, "bad", "missing_column", None)
        got = wait_all(ex, {"bad"}, timeout=120)["bad"]
    finally:
        ex.close()
    log = (tmp_path / "logs" / "bad.err").read_text()
    assert "Traceback (most recent call last)" in log and "KeyError: 'missing'" in log
    assert "return table[column]" in log
    assert got.result is not None
    err = got.result["error"]
    assert err["kind"] == "user" and err["type"] == "KeyError"
    assert err["file"] == str(STEPS)
    line = STEPS.read_text().splitlines().index("    return table[column]  # type: ignore[index]")
    assert err["line"] == line + 1
    wheres = [f["where"] for f in err["frames"]]
    assert wheres[0] == "insitu" and wheres[-1] == "library" and "user" in wheres
    assert all("site-packages" in f["file"] for f in err["frames"] if f["where"] == "library")


def test_the_environment_forces_the_watchdog(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    monkeypatch.setenv("INSITU_MEMORY_ENFORCEMENT", "watchdog")
    ex = LocalExecutor()
    try:
        launch(ex, tmp_path, "w", "touch", "256MiB", mib=16)
        got = wait_all(ex, {"w"}, timeout=120)["w"]
    finally:
        ex.close()
    assert got.result is not None and got.result["ok"]
    assert got.memory_enforcement == "watchdog"
    monkeypatch.setenv("INSITU_MEMORY_ENFORCEMENT", "rlimit")
    with pytest.raises(UserError, match="INSITU_MEMORY_ENFORCEMENT='rlimit'"):
        LocalExecutor()
