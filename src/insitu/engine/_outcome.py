"""What an attempt's end means: its error class, and whether the task is retried.

Each rule is small and testable alone; :func:`classify` applies them in order.
"""

from __future__ import annotations

import signal as _signal
from typing import Any

from insitu._units import format_bytes, suggest_memory
from insitu.executor import AttemptExit

# error kinds that are never retried: running again would fail the same way
NOT_RETRIED = frozenset({"oom", "import", "serialization", "missing_input", "storage",
                         "pruned"})


def classify(ex: AttemptExit, *, memory_limit: int | None, timeout: float | None
             ) -> dict[str, Any] | None:
    """None if the attempt succeeded; otherwise its error, with ``kind`` one of
    user, oom, timeout, lost, cancelled, import, serialization, missing_input, storage.
    A gang's error is its failing rank's, with ``rank`` and the ranks stopped because of it
    (``stopped_ranks``)."""
    err = _classify(ex, memory_limit=memory_limit, timeout=timeout)
    if err is None or not ex.ranks or ex.failed_rank is None or err["kind"] == "cancelled":
        return err
    k = ex.failed_rank
    stopped = [r["rank"] for r in ex.ranks if r["rank"] != k and r["state"] != "succeeded"]
    err = {**err, "rank": k, "stopped_ranks": stopped, "world_size": len(ex.ranks)}
    if err["kind"] != "user" and not str(err.get("message", "")).startswith("rank"):
        err["message"] = f"rank {k}: {err.get('message')}"
    return err


def with_ranks(placement: dict[str, Any] | None, ex: AttemptExit) -> dict[str, Any] | None:
    """An attempt's placement with how each rank of its gang ended (``placement["ranks"]``:
    node, GPUs, pid, state, exit code or signal, peak memory and limit, error, log files)."""
    if not ex.ranks:
        return placement
    placed = {r["rank"]: r for r in (placement or {}).get("ranks", [])}
    ranks = [{**placed.get(r["rank"], {}), **r} for r in ex.ranks]
    return {**(placement or {}), "ranks": ranks}


def _classify(ex: AttemptExit, *, memory_limit: int | None, timeout: float | None
              ) -> dict[str, Any] | None:
    res = ex.result
    if ex.cancelled:
        return {"kind": "cancelled", "message": "cancelled"}
    if ex.timed_out:
        return {"kind": "timeout", "timeout": timeout,
                "message": f"stopped after its timeout of {timeout:g}s"}
    enforcement = getattr(ex, "memory_enforcement", None)
    if getattr(ex, "oom_killed", False):  # stopped at its limit, whatever it wrote
        return {"kind": "oom", **_oom(ex.peak_memory, memory_limit, enforcement,
                                      getattr(ex, "allocation", None))}
    if res is not None and res.get("ok"):
        return None
    if res is not None:
        err = dict(res["error"])
        if err["kind"] == "oom":
            said = err.get("message") if err.get("type") else None
            err.update(_oom(ex.peak_memory, memory_limit, enforcement,
                            err.get("failed_allocation"), said=said))
        return err
    # no result: the process died
    if memory_limit and ex.peak_memory and ex.peak_memory >= 0.9 * memory_limit:
        return {"kind": "oom", **_oom(ex.peak_memory, memory_limit, enforcement, None)}
    if ex.signal:
        name = _signal.Signals(ex.signal).name if ex.signal in _signal.Signals._value2member_map_ \
            else str(ex.signal)
        return {"kind": "lost", "signal": ex.signal,
                "message": f"the worker process was killed by {name}"}
    if ex.exit_code is None and ex.pid is None:
        return {"kind": "lost", "node": ex.node,
                "message": ex.reason or "the worker was lost (the executor went away)"}
    return {"kind": "lost", "exit_code": ex.exit_code,
            "message": f"the worker process exited with code {ex.exit_code} without a result"}


def _oom(peak: int | None, limit: int | None, enforcement: str | None,
         allocation: int | None, *, said: str | None = None) -> dict[str, Any]:
    """The out-of-memory error: peak resident memory, the limit and how it was enforced,
    the allocation that failed (or was in progress), and a limit that fits the need."""
    out: dict[str, Any] = {"peak_memory": peak, "memory_limit": limit,
                           "enforcement": enforcement, "failed_allocation": allocation}
    if limit:
        text = f"out of memory: reached its limit of {format_bytes(limit)} (resident memory"
        text += f", enforced by {enforcement})" if enforcement else ")"
        text += f" with {format_bytes(peak)} at peak"
    else:
        text = f"out of memory ({format_bytes(peak)} resident at peak)"
    if said:
        text += f"; {said}"
    elif allocation:
        text += f"; it was allocating {format_bytes(allocation)} then"
    out["message"] = text
    if limit or allocation:
        sug = suggest_memory(peak or 0, limit or 0, allocation)
        out["suggested_memory"] = sug
        out["hint"] = (f'give the step more memory: @insitu.step(memory="{sug}"), or '
                       f'.options(memory="{sug}") where the pipeline calls it')
    return out


def should_retry(error: dict[str, Any], *, failures: int, max_retries: int,
                 retry_on: list[str]) -> bool:
    """``failures`` counts this task's failed attempts so far, this one included."""
    if failures > max_retries or error["kind"] in NOT_RETRIED or error["kind"] == "cancelled":
        return False
    if error["kind"] == "user" and retry_on:
        return bool(set(retry_on) & set(error.get("mro", [])))
    return True


def backoff(retry: dict[str, Any], failures: int) -> float:
    base = float(retry.get("backoff", 1.0))
    factor = float(retry.get("backoff_factor", 2.0))
    cap = float(retry.get("max_backoff", 60.0))
    return float(min(cap, base * factor ** max(0, failures - 1)))
