"""``insitu explain``: a failed run's cause on one screen, and the fix.

Every failed step is shown: the first in full, the others in one line each. The location and
the fix name the innermost frame in the user's own files; frames in libraries, the standard
library and insitu are shown apart (or hidden).
"""

from __future__ import annotations

import os
import shlex
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from insitu._config import Config
from insitu._frames import frames_with_where
from insitu._units import format_bytes
from insitu.engine import shown_state
from insitu.engine._paths import log_path
from insitu.errors import not_found
from insitu.store import RunRecord, Store, TaskRecord
from insitu.store import _records as S


def tail(path: Any, n: int = 15) -> list[str]:
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


def _library_path(path: str) -> str:
    """A library file without its site-packages prefix (``pandas/core/frame.py``)."""
    parts = path.split(os.sep)
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            return os.sep.join(parts[parts.index(marker) + 1:])
    return path


def _source_hint(run: RunRecord) -> str:
    f = (run.spec.get("source") or {}).get("file")
    target = f"{display_path(f)}:{run.pipeline}" if f else f"FILE:{run.pipeline}"
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


def _frame_line(f: dict[str, Any], library: bool = False) -> str:
    path = _library_path(f["file"]) if library else display_path(f["file"])
    fn = f" in {f['function']}" if f.get("function") else ""
    return f"{path}:{f.get('line')}{fn}"


def _describe(run: RunRecord, t: TaskRecord, err: dict[str, Any], out: Text) -> str:
    """Append the error's full description to ``out``; return the fix."""
    kind = err.get("kind", "unknown")
    step: dict[str, Any] = next((s for s in run.spec["steps"] if s["id"] == t.step_id), {})
    loc = step.get("location") or {}
    rerun = _source_hint(run)
    fix: str
    if kind == "user":
        out.append("error: ", style="bold red")
        out.append(f"{err.get('type')}: {err.get('message')}\n")
        inner, user, below = user_location(err)
        if inner is not None:
            out.append(f"at {_frame_line(inner)}\n", style="bold")
            if inner.get("code"):
                out.append(f"    {inner['code']}\n")
        if len(user) > 1 or (user and below):
            out.append("\nyour code (innermost last):\n")
            for f in user[-4:]:
                out.append(f"  {_frame_line(f)}\n", style="dim")
                if f.get("code"):
                    out.append(f"      {f['code']}\n")
        if below:
            head = ("raised inside library code called from there:\n" if inner is not None
                    else "raised inside library code (no frame of your own code):\n")
            out.append("\n" + head)
            for f in below[-3:]:
                out.append(f"  {_frame_line(f, library=True)}\n", style="dim")
        where = (f"{display_path(inner['file'])}:{inner.get('line')}" if inner is not None
                 else f"the step's code ({step.get('name', t.step_id)} at "
                      f"{loc.get('file', '?')}:{loc.get('line', '?')})")
        fix = f"fix the code at {where}, then `{rerun}` (finished steps come from the cache)"
        retry_on = (step.get("retries") or {}).get("retry_on")
        if retry_on and not set(retry_on) & set(err.get("mro", [])):
            fix += (f"; note that {err.get('type')} is not in the step's retry_on "
                    f"({', '.join(retry_on)}), so it was not retried")
    elif kind == "oom":
        out.append("error: out of memory\n", style="bold red")
        out.append(f"  peak memory   {format_bytes(err.get('peak_memory'))}\n")
        out.append(f"  memory limit  {format_bytes(err.get('memory_limit'))}\n")
        if err.get("failed_allocation"):
            out.append(f"  failed allocation  {format_bytes(err.get('failed_allocation'))}\n")
        if err.get("enforcement"):
            out.append(f"  enforced by   {err.get('enforcement')}\n")
        sug = err.get("suggested_memory", "a larger value")
        if isinstance(sug, int):
            mib = -(-sug // 2**20)
            sug = f"{mib // 1024}GiB" if mib % 1024 == 0 else f"{mib}MiB"
        out.append(f"  suggested     {sug}\n")
        name = step.get("name", t.step_id)
        fix = (f'give the step more memory: @insitu.step(memory="{sug}") on {name}, or '
               f'{name}.options(memory="{sug}")(...) where the pipeline calls it '
               f"({loc.get('file', '?')}:{loc.get('line', '?')}); then `{rerun}`")
    elif kind == "timeout":
        out.append("error: timeout\n", style="bold red")
        out.append(f"  stopped after its timeout of {err.get('timeout') or 0:g}s "
                   f"on each of {t.attempts} attempt(s)\n")
        fix = (f"raise the step's timeout (@insitu.step(timeout=...)) or make it faster; then "
               f"`{rerun}`")
    elif kind == "lost":
        out.append("error: lost worker\n", style="bold red")
        out.append(f"  {err.get('message')}\n")
        fix = f"if something outside killed it, continue the run: `insitu resume {run.id}`"
    elif kind == "missing_input":
        out.append("error: missing input\n", style="bold red")
        out.append(f"  {err.get('message')}\n")
        fix = f"{err.get('hint') or 'recompute the input'}: `{rerun} --no-cache`"
    elif kind == "serialization":
        out.append("error: the output cannot be serialised\n", style="bold red")
        out.append(f"  {err.get('message')}\n")
        fix = str(err.get("hint") or "return a serialisable value")
    elif kind == "import":
        out.append("error: the step's code cannot be imported\n", style="bold red")
        out.append(f"  {err.get('type')}: {err.get('message')}\n")
        fix = f"fix the import error, then `{rerun}`"
    elif kind == "tuning":
        out.append("error: tuning stopped\n", style="bold red")
        out.append(f"  {err.get('message')}\n")
        fix = str(err.get("hint") or f"insitu tune show {run.id}/{t.id}")
    elif kind == "storage":
        out.append("error: the output could not be stored\n", style="bold red")
        out.append(f"  {err.get('message')}\n")
        fix = str(err.get("hint") or f"`insitu logs {run.id} {t.id}`")
    else:
        out.append(f"error: {kind}", style="bold red")
        out.append(f": {err['message']}\n" if err.get("message") else "\n")
        fix = str(err.get("hint") or f"see its output: `insitu logs {run.id} {shlex.quote(t.id)}`")
    return fix


def _brief(err: dict[str, Any]) -> str:
    """One line for a failed step that is not shown in full."""
    kind = err.get("kind", "unknown")
    if kind == "user":
        inner, _, _ = user_location(err)
        at = f" at {_frame_line(inner)}" if inner is not None else ""
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


def explain(run: RunRecord, store: Store, cfg: Config, console: Console,
            step: str | None = None) -> int:
    """Print why ``run`` (or its ``step``) failed; return a CLI exit code (0 when there was
    nothing to explain: the answer is the message)."""
    tasks = store.list_tasks(run.id)
    scope = tasks if step is None else pick_tasks(tasks, step, run)
    failed = failed_tasks(scope)
    what = f"run {run.id} ({run.pipeline})" if step is None else \
        f"step '{step}' of run {run.id} ({run.pipeline})"
    if not failed:
        if step is not None:
            states = sorted({t.state for t in scope if t.map_size is None or len(scope) == 1})
            console.print(Text(f"{what} is {', '.join(states)}: nothing failed there."))
            failed_all = failed_tasks(tasks)
            if failed_all:
                console.print(Text("failed steps of this run: "
                                   + ", ".join(t.id for t in failed_all)
                                   + f"  (insitu explain {run.id})"))
            return 0
        state = shown_state(run)
        if state == S.INTERRUPTED:
            console.print(Text(f"{what} was interrupted (its engine is gone) and nothing "
                               f"failed: continue it with `insitu resume {run.id}`."))
        elif state in (S.RUN_SUCCEEDED, S.RUN_PENDING, S.RUN_RUNNING):
            console.print(Text(f"{what} is {state}: nothing failed."))
        elif run.state == S.RUN_CANCELLED:
            console.print(Text(f"{what} was cancelled. Continue it with "
                               f"`insitu resume {run.id}`."))
        else:
            console.print(Text(f"{what} is {run.state} but no step failed "
                               f"(it may have been interrupted): `insitu resume {run.id}`"))
        return 0
    first = failed[0]
    err, last = _error_of(store, run, first)
    out = Text()
    n_failed = f" ({len(failed)} steps failed; the first is shown)" if len(failed) > 1 else ""
    out.append(f"{what} failed" + ("" if first.id == step else f" at step '{first.id}'"),
               style="bold")
    out.append(f" after {first.attempts} attempt{'s' if first.attempts != 1 else ''}"
               f"{n_failed}\n\n")
    fix = _describe(run, first, err, out)
    if last is not None:
        lines = tail(log_path(cfg, run.id, first.id, last.number, "err"), 400)
        if err.get("frames") and "Traceback (most recent call last):" in lines:
            # the traceback is shown above, frame by frame: keep what the step printed
            cut = len(lines) - 1 - lines[::-1].index("Traceback (most recent call last):")
            lines = lines[:cut]
        lines = lines[-8:]
        if lines:
            out.append(f"\nlast lines of stderr (attempt {last.number}):\n")
            for line in lines:
                out.append(f"  {line}\n", style="dim")
    out.append("\nfix: ", style="bold green")
    out.append(fix + "\n")
    out.append(f"logs: insitu logs {run.id} {shlex.quote(first.id)}", style="dim")
    if len(failed) > 1:
        out.append("\n\nalso failed:\n", style="bold")
        for t in failed[1:8]:
            e, _ = _error_of(store, run, t)
            out.append(f"  {t.id}: ", style="bold")
            out.append(f"{_brief(e)}\n")
            out.append(f"      insitu explain {run.id} {shlex.quote(t.id)}\n", style="dim")
        if len(failed) > 8:
            out.append(f"  ... and {len(failed) - 8} more\n")
    console.print(Panel(out, title=f"why run {run.id} failed", title_align="left"))
    return 0
