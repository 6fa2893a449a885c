"""``insitu explain`` and ``insitu why`` on the screen.

The facts come from :mod:`insitu.engine._explain` (the server returns the same facts); this
module only renders them. Every failed step is shown: the first in full, the others in one
line each. The location and the fix name the innermost frame in the user's own files; frames
in libraries, the standard library and insitu are shown apart (or hidden).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from insitu._config import Config
from insitu.engine._explain import (
    SHOWN_ALSO,
    SHOWN_LIBRARY,
    SHOWN_YOURS,
    display_path,
    explain_facts,
    frame_line,
    why_facts,
)
from insitu.store import RunRecord, Store

__all__ = ["display_path", "explain", "render_explain", "render_why", "why"]


def _describe(facts: dict[str, Any], out: Text) -> None:
    """Append the error's full description to ``out``."""
    err = facts["error"]
    kind = err["kind"]
    if kind == "user":
        out.append("error: ", style="bold red")
        out.append(f"{err['label']}\n")
        for line in err["details"]:  # a distributed step: the rank it failed on
            out.append(f"  {line}\n")
        inner = err["where"]
        yours, below = facts["frames"]["yours"], facts["frames"]["library"]
        if inner is not None:
            out.append(f"at {frame_line(inner)}\n", style="bold")
            if inner.get("code"):
                out.append(f"    {inner['code']}\n")
        if len(yours) > 1 or (yours and below):
            out.append("\nyour code (innermost last):\n")
            for f in yours[-SHOWN_YOURS:]:
                out.append(f"  {frame_line(f)}\n", style="dim")
                if f.get("code"):
                    out.append(f"      {f['code']}\n")
        if below:
            head = ("raised inside library code called from there:\n" if inner is not None
                    else "raised inside library code (no frame of your own code):\n")
            out.append("\n" + head)
            for f in below[-SHOWN_LIBRARY:]:
                out.append(f"  {frame_line(f)}\n", style="dim")
    elif err["details"]:
        out.append(f"error: {err['label']}\n", style="bold red")
        for line in err["details"]:
            out.append(f"  {line}\n")
    else:
        out.append(f"error: {err['label']}", style="bold red")
        out.append(f": {err['message']}\n" if err.get("message") else "\n")


def render_explain(facts: dict[str, Any]) -> list[Any]:
    """What ``insitu explain`` prints for ``facts`` (from :func:`explain_facts`)."""
    if not facts["failed"]:
        return [Text(line) for line in facts["messages"]]
    step, first = facts["step"], facts["failed_step"]
    n = facts["attempts"]
    count = facts["failed_count"]
    out = Text()
    n_failed = f" ({count} steps failed; the first is shown)" if count > 1 else ""
    out.append(f"{facts['what']} failed" + ("" if first == step else f" at step '{first}'"),
               style="bold")
    out.append(f" after {n} attempt{'s' if n != 1 else ''}{n_failed}\n\n")
    _describe(facts, out)
    stderr = facts.get("stderr")
    if stderr and stderr["lines"]:
        out.append(f"\nlast lines of stderr (attempt {stderr['attempt']}):\n")
        for line in stderr["lines"]:
            out.append(f"  {line}\n", style="dim")
    out.append("\nfix: ", style="bold green")
    out.append(facts["fix"] + "\n")
    out.append(f"logs: {facts['logs']}", style="dim")
    also = facts["also_failed"]
    if also:
        out.append("\n\nalso failed:\n", style="bold")
        for t in also[:SHOWN_ALSO]:
            out.append(f"  {t['step']}: ", style="bold")
            out.append(f"{t['summary']}\n")
            out.append(f"      {t['explain']}\n", style="dim")
        if len(also) > SHOWN_ALSO:
            out.append(f"  ... and {len(also) - SHOWN_ALSO} more\n")
    return [Panel(out, title=f"why run {facts['run']} failed", title_align="left")]


def explain(run: RunRecord, store: Store, cfg: Config, console: Console,
            step: str | None = None) -> int:
    """Print why ``run`` (or its ``step``) failed; return a CLI exit code (0 when there was
    nothing to explain: the answer is the message)."""
    for part in render_explain(explain_facts(run, store, cfg, step)):
        console.print(part)
    return 0


def render_why(facts: dict[str, Any]) -> list[Text]:
    """What ``insitu why`` prints for ``facts`` (from :func:`why_facts`)."""
    if not facts["steps"]:
        return [Text(facts["message"])]
    lines = []
    for s in facts["steps"]:
        lines.append(Text.assemble((s["step"], "bold"), f": {s['reason']}"))
        for more in s["reasons"][1:3]:
            lines.append(Text(f"    also: {more}"))
    return lines


def why(run: RunRecord, store: Store, console: Console, step: str | None = None) -> None:
    """Print why ``run``'s steps (or its ``step``) are waiting."""
    for line in render_why(why_facts(run, store, step)):
        console.print(line)
