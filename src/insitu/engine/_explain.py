"""The facts behind ``insitu explain`` and ``insitu why``, as plain data (JSON values).

:func:`explain_facts` says why a run (or one step) failed: the cause, where in the user's own
code, the frames, the fix, the last lines of stderr, the other failed steps. :func:`why_facts`
says why a run's steps are waiting. The command line renders these (``insitu.cli._explain``)
and the server returns them as they are, so both say the same thing.

Paths are shown through ``show_path``: relative to the current directory for the command
line (:func:`display_path`), absolute for the server.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from typing import Any

from insitu._config import Config
from insitu._frames import frames_with_where
from insitu._units import format_bytes
from insitu.engine._paths import log_path
from insitu.engine._refs import condition_steps, upstream_steps
from insitu.engine._status import shown_state
from insitu.errors import not_found
from insitu.executor._gang import rank_path
from insitu.store import RunRecord, Store, TaskRecord
from insitu.store import _records as S

ShowPath = Callable[[str], str]
SHOWN_YOURS = 4      # the user's frames the command line shows (innermost last)
SHOWN_LIBRARY = 3    # library frames below them
SHOWN_ALSO = 7       # other failed steps shown in one line each
STDERR_LINES = 8


def tail(path: Any, n: int = 15) -> list[str]:
    """The last ``n`` lines of a text file (of its last 64 KiB); [] if it cannot be read."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return []
    return lines[-n:]


def display_path(path: str) -> str:
    """``path`` as a user can paste it here: relative to the current directory when it lies
    below it, absolute otherwise (never ``../../...``)."""
    p = os.path.abspath(path)
    try:
        rel = os.path.relpath(p)
    except ValueError:
        return p
    return p if rel == os.pardir or rel.startswith(os.pardir + os.sep) else rel


def absolute_path(path: str) -> str:
    return os.path.abspath(path)


def library_path(path: str) -> str:
    """A library file without its site-packages prefix (``pandas/core/frame.py``)."""
    parts = path.split(os.sep)
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            return os.sep.join(parts[parts.index(marker) + 1:])
    return path


def rerun_command(run: RunRecord, show_path: ShowPath = display_path) -> str:
    f = (run.spec.get("source") or {}).get("file")
    target = f"{show_path(f)}:{run.pipeline}" if f else f"FILE:{run.pipeline}"
    return f"insitu run {shlex.quote(target)}"


def failed_tasks(tasks: list[TaskRecord]) -> list[TaskRecord]:
    """Every task that failed by itself (a map's failing items, not the map), in the order
    they failed."""
    failed = [t for t in tasks if t.state == S.TASK_FAILED
              and (t.error or {}).get("kind") != "item_failed"]
    return sorted(failed, key=lambda t: (t.ended_at or 0.0, t.seq))


def _error_of(store: Store, run: RunRecord, t: TaskRecord) -> tuple[dict[str, Any], Any]:
    attempts = store.list_attempts(run.id, t.id)
    last = attempts[-1] if attempts else None
    return t.error or (last.error if last else None) or {}, last


def user_location(err: dict[str, Any]) -> tuple[dict[str, Any] | None, list[dict[str, Any]],
                                                  list[dict[str, Any]]]:
    """(innermost frame of the user's code or None, the user's frames, the library frames
    below the innermost user frame), innermost last."""
    frames = frames_with_where(list(err.get("frames") or []))
    user = [f for f in frames if f["where"] == "user"]
    if not user and err.get("file"):
        guess = frames_with_where([{"file": err["file"], "line": err.get("line"),
                                    "function": None, "code": None}])[0]
        if guess["where"] == "user":
            user = [guess]
    inner = user[-1] if user else None
    below: list[dict[str, Any]] = []
    if inner is not None and inner in frames:
        below = [f for f in frames[frames.index(inner) + 1:]
                 if f["where"] in ("library", "stdlib")]
    elif inner is None:
        below = [f for f in frames if f["where"] in ("library", "stdlib")]
    return inner, user, below


def _frame(f: dict[str, Any], show_path: ShowPath, library: bool = False) -> dict[str, Any]:
    """A frame as shown: its file as the user can paste it (a library's without the
    site-packages prefix)."""
    return {"file": library_path(f["file"]) if library else show_path(f["file"]),
            "line": f.get("line"), "function": f.get("function"), "code": f.get("code"),
            "where": f.get("where")}


def frame_line(f: dict[str, Any]) -> str:
    """``file:line in function`` of a shown frame."""
    fn = f" in {f['function']}" if f.get("function") else ""
    return f"{f['file']}:{f.get('line')}{fn}"


_LABELS = {"oom": "out of memory", "timeout": "timeout", "lost": "lost worker",
           "missing_input": "missing input", "serialization": "the output cannot be serialised",
           "import": "the step's code cannot be imported", "tuning": "tuning stopped",
           "storage": "the output could not be stored"}


def _suggested_memory(err: dict[str, Any]) -> str:
    sug = err.get("suggested_memory", "a larger value")
    if isinstance(sug, int):
        mib = -(-sug // 2**20)
        sug = f"{mib // 1024}GiB" if mib % 1024 == 0 else f"{mib}MiB"
    return str(sug)


def _cause(run: RunRecord, t: TaskRecord, err: dict[str, Any], show_path: ShowPath
           ) -> dict[str, Any]:
    """The error of task ``t`` described: its kind, a label, details, where in the user's
    code, the frames, and the fix."""
    kind = err.get("kind", "unknown")
    step: dict[str, Any] = next((s for s in run.spec["steps"] if s["id"] == t.step_id), {})
    loc = step.get("location") or {}
    rerun = rerun_command(run, show_path)
    out: dict[str, Any] = {"kind": kind, "label": _LABELS.get(kind, kind),
                           "type": err.get("type"), "message": err.get("message"),
                           "details": [], "where": None, "your_frames": [],
                           "library_frames": []}
    details: list[str] = out["details"]
    fix: str
    if kind == "user":
        out["label"] = f"{err.get('type')}: {err.get('message')}"
        inner, user, below = user_location(err)
        if inner is not None:
            out["where"] = _frame(inner, show_path)
        out["your_frames"] = [_frame(f, show_path) for f in user]
        out["library_frames"] = [_frame(f, show_path, library=True) for f in below]
        where = (f"{show_path(inner['file'])}:{inner.get('line')}" if inner is not None
                 else f"the step's code ({step.get('name', t.step_id)} at "
                      f"{loc.get('file', '?')}:{loc.get('line', '?')})")
        fix = f"fix the code at {where}, then `{rerun}` (finished steps come from the cache)"
        retry_on = (step.get("retries") or {}).get("retry_on")
        if retry_on and not set(retry_on) & set(err.get("mro", [])):
            fix += (f"; note that {err.get('type')} is not in the step's retry_on "
                    f"({', '.join(retry_on)}), so it was not retried")
    elif kind == "oom":
        details.append(f"peak memory   {format_bytes(err.get('peak_memory'))}")
        details.append(f"memory limit  {format_bytes(err.get('memory_limit'))}")
        if err.get("failed_allocation"):
            details.append(f"failed allocation  {format_bytes(err.get('failed_allocation'))}")
        if err.get("enforcement"):
            details.append(f"enforced by   {err.get('enforcement')}")
        sug = _suggested_memory(err)
        details.append(f"suggested     {sug}")
        out["suggested_memory"] = sug
        name = step.get("name", t.step_id)
        fix = (f'give the step more memory: @insitu.step(memory="{sug}") on {name}, or '
               f'{name}.options(memory="{sug}")(...) where the pipeline calls it '
               f"({loc.get('file', '?')}:{loc.get('line', '?')}); then `{rerun}`")
    elif kind == "timeout":
        details.append(f"stopped after its timeout of {err.get('timeout') or 0:g}s "
                       f"on each of {t.attempts} attempt(s)")
        fix = (f"raise the step's timeout (@insitu.step(timeout=...)) or make it faster; then "
               f"`{rerun}`")
    elif kind == "lost":
        details.append(f"{err.get('message')}")
        fix = str(err.get("hint") or
                  f"if something outside killed it, continue the run: `insitu resume {run.id}`")
    elif kind == "missing_input":
        details.append(f"{err.get('message')}")
        fix = f"{err.get('hint') or 'recompute the input'}: `{rerun} --no-cache`"
    elif kind == "serialization":
        details.append(f"{err.get('message')}")
        fix = str(err.get("hint") or "return a serialisable value")
    elif kind == "import":
        details.append(f"{err.get('type')}: {err.get('message')}")
        fix = f"fix the import error, then `{rerun}`"
    elif kind == "tuning":
        details.append(f"{err.get('message')}")
        fix = str(err.get("hint") or f"insitu tune show {run.id}/{t.id}")
    elif kind == "storage":
        details.append(f"{err.get('message')}")
        fix = str(err.get("hint") or f"`insitu logs {run.id} {t.id}`")
    else:
        fix = str(err.get("hint") or f"see its output: `insitu logs {run.id} {shlex.quote(t.id)}`")
    if err.get("rank") is not None:  # a gang: which rank failed first, and the others
        stopped = err.get("stopped_ranks") or []
        line = f"on rank {err['rank']} of {err.get('world_size', '?')}, the first rank to fail"
        if stopped:
            s = "s" if len(stopped) > 1 else ""
            line += (f"; rank{s} {', '.join(map(str, stopped))} "
                     f"{'were' if s else 'was'} stopped because of it")
        details.insert(0, line)
        out["rank"] = err["rank"]
    out["fix"] = fix
    return out


def brief(err: dict[str, Any], show_path: ShowPath = display_path) -> str:
    """One line for a failed step that is not shown in full."""
    kind = err.get("kind", "unknown")
    if kind == "user":
        inner, _, _ = user_location(err)
        at = f" at {frame_line(_frame(inner, show_path))}" if inner is not None else ""
        return f"{err.get('type')}: {str(err.get('message'))[:120]}{at}"
    label = {"oom": "out of memory", "serialization": "the output cannot be serialised",
             "import": "the step's code cannot be imported", "timeout": "timeout",
             "lost": "lost worker", "missing_input": "missing input"}.get(kind, kind)
    msg = str(err.get("message") or "").splitlines()[0][:120] if err.get("message") else ""
    return f"{label}" + (f": {msg}" if msg else "")


def pick_tasks(tasks: list[TaskRecord], step: str, run: RunRecord) -> list[TaskRecord]:
    """The tasks ``step`` names: one task (``evaluate[1]``) or a step with its map items."""
    exact = [t for t in tasks if t.id == step]
    if exact and exact[0].map_size is None:
        return exact
    chosen = [t for t in tasks if t.step_id == step]
    if not chosen:
        raise not_found("step", step, {t.step_id for t in tasks}, where=f"run {run.id}")
    return chosen


def _stderr_tail(cfg: Config, run: RunRecord, task_id: str, attempt: int,
                 has_frames: bool, rank: int | None = None) -> list[str]:
    path = str(log_path(cfg, run.id, task_id, attempt, "err"))
    lines = tail(rank_path(path, rank) if rank else path, 400)
    if has_frames and "Traceback (most recent call last):" in lines:
        # the traceback is shown frame by frame: keep what the step printed
        cut = len(lines) - 1 - lines[::-1].index("Traceback (most recent call last):")
        lines = lines[:cut]
    return lines[-STDERR_LINES:]


def explain_facts(run: RunRecord, store: Store, cfg: Config, step: str | None = None, *,
                  show_path: ShowPath = display_path) -> dict[str, Any]:
    """Why ``run`` (or its ``step``: a task like ``evaluate[1]``, or a step with its map
    items) failed, as data. ``failed`` is False when nothing failed there; ``message`` then
    says what is the case. :class:`NotFound` for an unknown step."""
    tasks = store.list_tasks(run.id)
    scope = tasks if step is None else pick_tasks(tasks, step, run)
    failed = failed_tasks(scope)
    what = f"run {run.id} ({run.pipeline})" if step is None else \
        f"step '{step}' of run {run.id} ({run.pipeline})"
    state = shown_state(run)
    facts: dict[str, Any] = {"run": run.id, "pipeline": run.pipeline, "state": state,
                             "step": step, "what": what, "failed": bool(failed)}
    if not failed:
        messages: list[str] = []
        failed_all = failed_tasks(tasks)
        if step is not None:
            states = sorted({t.state for t in scope if t.map_size is None or len(scope) == 1})
            messages.append(f"{what} is {', '.join(states)}: nothing failed there.")
            if failed_all:
                messages.append("failed steps of this run: "
                                + ", ".join(t.id for t in failed_all)
                                + f"  (insitu explain {run.id})")
        elif state == S.INTERRUPTED:
            messages.append(f"{what} was interrupted (its engine is gone) and nothing "
                            f"failed: continue it with `insitu resume {run.id}`.")
        elif state in (S.RUN_SUCCEEDED, S.RUN_PENDING, S.RUN_RUNNING):
            messages.append(f"{what} is {state}: nothing failed.")
        elif run.state == S.RUN_CANCELLED:
            messages.append(f"{what} was cancelled. Continue it with "
                            f"`insitu resume {run.id}`.")
        else:
            messages.append(f"{what} is {run.state} but no step failed "
                            f"(it may have been interrupted): `insitu resume {run.id}`")
        facts.update(message="\n".join(messages), messages=messages,
                     failed_steps=[t.id for t in failed_all])
        return facts
    first = failed[0]
    err, last = _error_of(store, run, first)
    cause = _cause(run, first, err, show_path)
    facts.update(
        failed_step=first.id, attempts=first.attempts, failed_count=len(failed),
        error=cause, cause=cause["label"], where=cause["where"], fix=cause.pop("fix"),
        frames={"yours": cause.pop("your_frames"), "library": cause.pop("library_frames")},
        stderr={"attempt": last.number,
                "lines": _stderr_tail(cfg, run, first.id, last.number,
                                      bool(err.get("frames")), err.get("rank"))}
        if last is not None else None,
        logs=f"insitu logs {run.id} {shlex.quote(first.id)}"
             + (f" --rank {err['rank']}" if err.get("rank") else ""),
        rerun=rerun_command(run, show_path),
        also_failed=[{"step": t.id, "summary": brief(_error_of(store, run, t)[0], show_path),
                      "explain": f"insitu explain {run.id} {shlex.quote(t.id)}"}
                     for t in failed[1:]])
    return facts


# -- why ------------------------------------------------------------------------------------

def why_facts(run: RunRecord, store: Store, step: str | None = None) -> dict[str, Any]:
    """Why ``run``'s steps (or its ``step``) wait, as data: for each step that waits, the
    scheduler's reason, the inputs it waits for, or what else holds it. A step that does
    not wait is listed only when asked for. :class:`NotFound` for an unknown step."""
    tasks = store.list_tasks(run.id)
    by_id = {t.id: t for t in tasks}
    steps = {s["id"]: s for s in run.spec["steps"]}
    if step is not None and step not in steps:
        raise not_found("step", step, steps, where=f"run {run.id}")
    out: list[dict[str, Any]] = []
    for sid in [step] if step else list(steps):
        t = by_id.get(sid)
        items = [x for x in tasks if x.step_id == sid and x.map_index is not None]
        waiting = [x for x in (items or ([t] if t else [])) if x.state == S.TASK_PENDING]
        if not waiting and step is None:
            continue
        state = t.state if t is not None else S.TASK_PENDING
        entry: dict[str, Any] = {"step": sid, "state": state, "waiting": bool(waiting),
                                 "items": len(items), "items_waiting": len(waiting) if items
                                 else 0, "reasons": [], "inputs": []}
        out.append(entry)
        if not waiting and t is not None:
            entry.update(kind="not_waiting", reason=f"{t.state}, not waiting")
            continue
        reasons = sorted({x.pending_reason for x in waiting if x.pending_reason})
        if reasons:
            head = f"{len(waiting)} of {len(items)} items" if items else "it"
            entry.update(kind="placement", reasons=reasons,
                         reason=f"{head} cannot be placed now: {reasons[0]}")
            continue
        s = steps[sid]
        deps = set().union(*(upstream_steps(r) for r in s["args"].values())) \
            if s["args"] else set()
        if s.get("map"):
            deps |= upstream_steps(s["map"]["over"])
        deps |= condition_steps(s.get("when"))
        open_deps = sorted(d for d in deps if d in by_id and by_id[d].state not in S.TASK_DONE)
        if open_deps:
            entry.update(kind="inputs",
                         inputs=[{"step": d, "state": by_id[d].state} for d in open_deps],
                         reason="waiting for its inputs from "
                                + ", ".join(f"{d} ({by_id[d].state})" for d in open_deps))
        elif s.get("exit_handler"):
            entry.update(kind="exit_handler", reason="the exit handler runs after every "
                                                     "other step")
        elif run.state in S.RUN_TERMINAL:
            entry.update(kind="not_run", reason=f"not run: the run is {run.state} "
                                                f"(`insitu resume {run.id}` runs it)")
        else:
            entry.update(kind="ready", reason="ready, about to be placed")
    facts: dict[str, Any] = {"run": run.id, "state": shown_state(run), "step": step,
                             "steps": out}
    if not out:
        facts["message"] = f"run {run.id} is {run.state}: no step is waiting."
    return facts
