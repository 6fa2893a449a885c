"""``insitu explain``: a failed run's cause on one screen, and the fix."""

from __future__ import annotations

import os
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from insitu._config import Config
from insitu._results import first_failure
from insitu._units import format_bytes
from insitu.engine._paths import log_path
from insitu.store import RunRecord, Store
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


def _source_hint(run: RunRecord) -> str:
    f = (run.spec.get("source") or {}).get("file") or "FILE"
    try:
        f = os.path.relpath(f)
    except ValueError:
        pass
    return f"insitu run {f}:{run.pipeline}"


def explain(run: RunRecord, store: Store, cfg: Config, console: Console) -> int:
    """Print why ``run`` failed; return a CLI exit code (0 when there was nothing to explain)."""
    tasks = store.list_tasks(run.id)
    if run.state in (S.RUN_SUCCEEDED, S.RUN_PENDING, S.RUN_RUNNING):
        console.print(f"run {run.id} ({run.pipeline}) is {run.state}: nothing failed.")
        return 0
    if run.state == S.RUN_CANCELLED:
        console.print(f"run {run.id} ({run.pipeline}) was cancelled. "
                      f"Continue it with `insitu resume {run.id}`.")
        return 0
    t = first_failure(tasks)
    if t is None:
        console.print(f"run {run.id} is {run.state} but no step failed "
                      f"(it may have been interrupted): `insitu resume {run.id}`")
        return 0
    attempts = store.list_attempts(run.id, t.id)
    last = attempts[-1] if attempts else None
    err: dict[str, Any] = t.error or (last.error if last else None) or {}
    kind = err.get("kind", "unknown")
    out = Text()
    out.append(f"run {run.id} ({run.pipeline}) failed at step '{t.id}'", style="bold")
    out.append(f" after {t.attempts} attempt{'s' if t.attempts != 1 else ''}\n\n")
    step: dict[str, Any] = next((s for s in run.spec["steps"] if s["id"] == t.step_id), {})
    loc = step.get("location") or {}
    rerun = _source_hint(run)
    fix: str
    if kind == "user":
        out.append("error: ", style="bold red")
        out.append(f"{err.get('type')}: {err.get('message')}\n")
        if err.get("file"):
            out.append(f"at {err['file']}:{err['line']}\n", style="bold")
        frames = err.get("frames") or []
        if frames:
            out.append("\nlast frames of your code:\n")
            for f in frames[-4:]:
                out.append(f"  {f['file']}:{f['line']} in {f['function']}\n", style="dim")
                if f.get("code"):
                    out.append(f"      {f['code']}\n")
        where = f"{err['file']}:{err['line']}" if err.get("file") else "the step's code"
        fix = f"fix the code at {where}, then `{rerun}` (finished steps come from the cache)"
        retry_on = (step.get("retries") or {}).get("retry_on")
        if retry_on and not set(retry_on) & set(err.get("mro", [])):
            fix += (f"; note that {err.get('type')} is not in the step's retry_on "
                    f"({', '.join(retry_on)}), so it was not retried")
    elif kind == "oom":
        out.append("error: out of memory\n", style="bold red")
        out.append(f"  peak memory   {format_bytes(err.get('peak_memory'))}\n")
        out.append(f"  memory limit  {format_bytes(err.get('memory_limit'))}\n")
        sug = err.get("suggested_memory", "a larger value")
        out.append(f"  suggested     {sug}\n")
        name = step.get("name", t.step_id)
        fix = (f'give the step more memory: @insitu.step(memory="{sug}") on {name}, or '
               f'{name}.options(memory="{sug}")(...) where the pipeline calls it '
               f"({loc.get('file', '?')}:{loc.get('line', '?')}); then `{rerun}`")
    elif kind == "timeout":
        out.append("error: timeout\n", style="bold red")
        out.append(f"  stopped after its timeout of {err.get('timeout'):g}s "
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
        fix = str(err.get("hint"))
    else:
        out.append(f"error: {kind}: {err.get('message')}\n", style="bold red")
        fix = f"`insitu logs {run.id} {t.id}`"
    if last is not None:
        lines = tail(log_path(cfg, run.id, t.id, last.number, "err"))
        if lines:
            out.append(f"\nlast lines of stderr (attempt {last.number}):\n")
            for line in lines:
                out.append(f"  {line}\n", style="dim")
    out.append("\nfix: ", style="bold green")
    out.append(fix + "\n")
    out.append(f"logs: insitu logs {run.id} {t.id}", style="dim")
    console.print(Panel(out, title=f"why run {run.id} failed", title_align="left"))
    return 0
