"""Rendering runs for people: live progress, summaries, tables."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from insitu._units import format_bytes, format_duration
from insitu.store import AttemptRecord, RunRecord, TaskRecord
from insitu.store import _records as S

STATE_STYLE = {
    "pending": "dim", "running": "cyan", "succeeded": "green", "cached": "green",
    "failed": "bold red", "skipped": "dim", "cancelled": "yellow", "lost": "yellow",
}


def clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, with an ellipsis when cut (never silently)."""
    return text if len(text) <= width else text[:max(width - 1, 0)] + "…"


def natural_key(text: str) -> tuple[Any, ...]:
    """A sort key that puts ``scan[2]`` before ``scan[10]`` (numbers compare as numbers)."""
    import re

    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text))


def state_text(state: str) -> Text:
    label = "cache hit" if state == S.TASK_CACHED else state
    return Text(label, style=STATE_STYLE.get(state, ""))


@dataclass
class StepRow:
    """One step's aggregate over its tasks (a map has many)."""

    step: str
    state: str
    attempts: int = 0
    total: int = 0
    done: int = 0
    cached: int = 0
    running: int = 0
    failed: int = 0
    pruned: int = 0
    started: float | None = None
    ended: float | None = None
    peak: int | None = None
    cpu_time: float = 0.0
    mapped: bool = False
    resources: dict[str, Any] | None = None
    nodes: set[str] = field(default_factory=set)
    cached_from: set[str] = field(default_factory=set)  # runs whose results a cache hit reused

    def elapsed(self, now: float) -> float | None:
        if self.started is None:
            return None
        return (self.ended if self.ended and self.state not in ("running",) else now) - \
            self.started


def step_rows(tasks: list[TaskRecord], attempts: list[AttemptRecord] | None = None
              ) -> list[StepRow]:
    rows: dict[str, StepRow] = {}
    for t in sorted(tasks, key=lambda t: t.seq):
        if t.map_index is None:
            mapped = t.map_size is not None
            rows[t.id] = StepRow(step=t.id, state=t.state, attempts=t.attempts,
                                 started=t.started_at, ended=t.ended_at, mapped=mapped,
                                 total=t.map_size or 0 if mapped else 1, resources=t.resources,
                                 cached=0 if mapped else int(t.state == S.TASK_CACHED),
                                 done=0 if mapped else int(t.state in S.TASK_DONE))
            origin = getattr(t, "cached_from", None)  # "RUN/TASK" of a cache hit's source
            if origin:
                rows[t.id].cached_from.add(str(origin).split("/", 1)[0])
        else:
            r = rows[t.step_id]
            r.mapped = True
            r.attempts += t.attempts
            r.resources = r.resources or t.resources
            r.done += t.state in S.TASK_DONE or t.state == S.TASK_PRUNED  # pruned: ended
            r.pruned += t.state == S.TASK_PRUNED
            r.cached += t.state == S.TASK_CACHED
            r.running += t.state == S.TASK_RUNNING
            r.failed += t.state == S.TASK_FAILED
            origin = getattr(t, "cached_from", None)
            if origin:
                r.cached_from.add(str(origin).split("/", 1)[0])
            if t.started_at and (r.started is None or t.started_at < r.started):
                r.started = t.started_at
            if t.ended_at and (r.ended is None or t.ended_at > r.ended):
                r.ended = t.ended_at
    for a in attempts or []:
        row = rows.get(a.task_id.split("[", 1)[0])
        if row is None:
            continue
        r = row
        if a.peak_memory and (r.peak is None or a.peak_memory > r.peak):
            r.peak = a.peak_memory
        r.cpu_time += a.cpu_time or 0.0
        if a.node:
            r.nodes.add(a.node)
    return list(rows.values())


def _note(r: StepRow) -> str:
    parts = []
    if r.mapped:
        parts.append(f"{r.done}/{r.total} done")
        if r.running:
            parts.append(f"{r.running} running")
        if r.failed:
            parts.append(f"{r.failed} failed")
        if r.pruned:
            parts.append(f"{r.pruned} pruned")
    if r.cached:
        parts.append("all from cache" if r.cached == r.total else f"{r.cached} cache hits")
        if r.cached_from:
            runs = sorted(r.cached_from)
            parts.append(f"from run {runs[0]}" + (f" (+{len(runs) - 1})" if len(runs) > 1
                                                  else ""))
    return ", ".join(parts)


def progress_table(run: RunRecord, tasks: list[TaskRecord], now: float) -> Table:
    tbl = Table(title=f"run {run.id}  {run.pipeline}", title_justify="left", expand=False)
    for col in ("step", "state", "attempts", "elapsed", ""):
        tbl.add_column(col)
    for r in step_rows(tasks):
        tbl.add_row(Text(r.step), state_text(r.state), str(r.attempts or "-"),
                    format_duration(r.elapsed(now)), _note(r))
    return tbl


def enforcement_line(attempts: list[AttemptRecord]) -> str | None:
    """How memory limits were enforced on these attempts (recorded per attempt), or None."""
    seen: dict[str, int] = {}
    for a in attempts:
        limits = getattr(a, "limits", None) or {}
        if limits.get("enforcement"):
            seen[str(limits["enforcement"])] = seen.get(str(limits["enforcement"]), 0) + 1
    if not seen:
        return None
    return "memory limits enforced by " + ", ".join(
        f"{k} ({n} attempt{'s' if n != 1 else ''})" for k, n in sorted(seen.items()))


def summary_table(run: RunRecord, tasks: list[TaskRecord],
                  attempts: list[AttemptRecord]) -> Table:
    tbl = Table(title_justify="left")
    for col in ("step", "state", "attempts", "duration", "cpu asked", "cpu time",
                "memory limit", "peak memory", "note"):
        tbl.add_column(col, justify="right" if col not in ("step", "state", "note") else "left")
    now = time.time()
    for r in step_rows(tasks, attempts):
        res = r.resources or {}
        tbl.add_row(Text(r.step), state_text(r.state), str(r.attempts or "-"),
                    format_duration(r.elapsed(now)),
                    f"{res['cpu']:g}" if res.get("cpu") else "-",
                    format_duration(r.cpu_time) if r.cpu_time else "-",
                    format_bytes(res.get("memory")) if res.get("memory") else "-",
                    format_bytes(r.peak), Text(_note(r)))
    return tbl


class LiveProgress:
    """Feeds the engine's progress callback into a rich Live display (or plain lines)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live: Any = None
        self._last = 0.0
        self._seen: dict[str, str] = {}
        self.plain = not console.is_terminal

    def __enter__(self) -> LiveProgress:
        if not self.plain:
            from rich.live import Live

            self.live = Live(console=self.console, auto_refresh=False, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def __call__(self, loop: Any) -> None:
        now = time.time()
        if self.plain:
            for r in step_rows(list(loop.tasks.values())):
                key = f"{r.state}:{r.done}" if not r.mapped else r.state
                if self._seen.get(r.step) != key:
                    self._seen[r.step] = key
                    if r.state != "pending":
                        note = _note(r)
                        self.console.print(f"  {r.step}: {r.state}" + (f" ({note})" if note
                                                                        else ""),
                                           highlight=False)
            return
        if now - self._last < 0.1 and loop.running:
            return
        self._last = now
        self.live.update(progress_table(loop.run_rec, list(loop.tasks.values()), now),
                         refresh=True)


def print_outcome(console: Console, err_console: Console, run: RunRecord,
                  tasks: list[TaskRecord], attempts: list[AttemptRecord]) -> int:
    """What a finished ``insitu run`` prints (the summary, the state, the first failure and
    where to look next); returns the exit code for the run's state."""
    from rich.markup import escape

    console.print(summary_table(run, tasks, attempts))
    took = format_duration((run.ended_at or time.time()) - (run.started_at or run.created_at))
    hits = sum(t.state == S.TASK_CACHED for t in tasks)
    style = {"succeeded": "bold green", "failed": "bold red"}.get(run.state, "bold yellow")
    console.print(f"[{style}]run {run.id} {run.state}[/] in {took}"
                  + (f", {hits} cache hit{'s' if hits != 1 else ''}" if hits else ""))
    if run.state == S.RUN_FAILED:
        first = next((t for t in tasks if t.state == S.TASK_FAILED and t.error
                      and t.error.get("kind") != "item_failed"), None)
        if first is not None:  # the cause in one line on stderr; explain has the rest
            e = first.error or {}
            what = f"{e['type']}: {e.get('message', '')}" if e.get("type") else \
                str(e.get("message") or e.get("kind"))
            last = what.strip().splitlines()[-1][:300] if what.strip() else ""
            err_console.print(f"[bold red]error:[/] step {escape(first.id)} failed: "
                              f"{escape(last)}")
            if e.get("hint"):
                err_console.print(f"[bold]fix:[/] {escape(str(e['hint']))}")
        console.print(f"why: [bold]insitu explain {run.id}[/]   logs: insitu logs {run.id}")
        return 1
    if run.state == S.RUN_CANCELLED:
        console.print(f"continue it with: insitu resume {run.id}")
        return 130
    return 0


def step_tasks(tasks: list[TaskRecord], step: str) -> list[TaskRecord]:
    """The tasks STEP names: one task (``evaluate[1]``, or a plain step), or a map's items."""
    exact = [t for t in tasks if t.id == step]
    if exact and exact[0].map_size is None:
        return exact
    items = [t for t in tasks if t.step_id == step and t.map_index is not None]
    return items or exact  # a map whose items were never made: the map itself


def log_tasks(tasks: list[TaskRecord], run_id: str, step: str | None,
              attempt: int | None) -> list[TaskRecord]:
    """The tasks ``insitu logs RUN [STEP] [--attempt N]`` reads (locally or on a server)."""
    from insitu.errors import UserError, not_found

    if step is not None:
        chosen = step_tasks(tasks, step)
        if not chosen:
            raise not_found("step", step, [t.id for t in tasks], where=f"run {run_id}")
        tasks = chosen
    if attempt is not None and step is None:
        raise UserError("--attempt needs a STEP", hint=f"insitu logs {run_id} STEP --attempt "
                        f"{attempt}")
    return tasks


def report_silent(err_console: Console, run_id: str, tasks: list[TaskRecord],
                  printed: set[str], step: str | None, attempt: int | None) -> None:
    """What ``insitu logs`` says on stderr about steps that printed nothing, or never ran."""
    from rich.markup import escape

    items_of = {t.step_id for t in tasks if t.map_index is not None}
    silent = [t for t in tasks if t.id not in printed  # a map with items speaks through them
              and not (t.map_size is not None and t.map_index is None and t.id in items_of)]
    if step is None and printed:
        return
    for t in silent[:20]:
        n = attempt or t.attempts
        if t.attempts == 0:
            reasons: dict[str, str] = {
                S.TASK_CACHED: "it came from the cache", S.TASK_SKIPPED: "it was skipped",
                S.TASK_PENDING: "it has not started", S.TASK_CANCELLED: "it was cancelled"}
            why = reasons.get(t.state, f"it is {t.state}")
            err_console.print(f"step {escape(t.id)}: no output: it never ran in run "
                              f"{escape(run_id)} ({why})")
        else:
            err_console.print(f"step {escape(t.id)}: attempt {n} printed nothing (its stdout "
                              "and stderr are empty)")
    if len(silent) > 20:
        err_console.print(f"... and {len(silent) - 20} more steps without output")
