"""``insitu schedule``: pipelines fired on a cron by an ``insitu server``.

The commands talk to the server ``insitu login`` chose (or ``INSITU_SERVER`` with
``INSITU_TOKEN``) through ``insitu.client``, in the project ``--project`` (else
``INSITU_PROJECT``, else the login's project, else ``default``). ``schedule create`` sends
the pipeline's code as a code package, as ``insitu run`` does on a server.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import click
from rich.table import Table

from insitu.cli._app import _check_target, _spec_from, console
from insitu.cli._common import PROJECT_OPTION, esc, server_client

if TYPE_CHECKING:
    from insitu.client import Client

_PROJECT = PROJECT_OPTION


def _client(project: str | None) -> Client:
    return server_client("schedules", project)


def _when(value: str | None) -> str:
    if not value:
        return "-"
    return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M %Z").strip()


@click.group()
def schedule() -> None:
    """Pipelines run on a cron by the server (create, ls, show, pause, resume, delete,
    backfill)."""


@schedule.command("create")
@click.argument("name")
@click.argument("target", metavar="FILE[:PIPELINE]")
@click.option("--cron", required=True, help="when, e.g. '0 3 * * *' (03:00 every day)")
@click.option("--timezone", "tz", default="UTC", show_default=True,
              help="the IANA time zone the cron is read in, e.g. Europe/Berlin")
@click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE",
              help="a pipeline parameter for every run (repeatable)")
@click.option("--catchup", type=click.Choice(["latest", "all", "none"]), default="latest",
              show_default=True, help="after downtime, which missed ticks run")
@click.option("--max-concurrent", type=click.IntRange(1, 100), default=1, show_default=True,
              help="runs of this schedule that may go at once (a tick beyond it is skipped)")
@click.option("--paused", is_flag=True, help="create it paused")
@_PROJECT
def create(name: str, target: str, cron: str, tz: str, params: tuple[str, ...],
           catchup: str, max_concurrent: int, paused: bool, project: str | None) -> None:
    """Run FILE[:PIPELINE] on a cron, e.g. --cron "0 3 * * *" --timezone Europe/Berlin."""
    from insitu._units import format_bytes
    from insitu.client import send_code
    from insitu.engine import bind_params, parse_cli_params

    _check_target(target)  # the file's errors first, before the server's
    spec = _spec_from(target, params)
    given = parse_cli_params(list(params))
    values = bind_params(spec, given, from_text=True)
    with _client(project) as c:
        sent, pkg = send_code(c, spec)
        view = c.post(c.in_project("schedules"), {
            "name": name, "spec": sent, "package": pkg.digest if pkg else None,
            "params": {k: v for k, v in values.items() if k in given}, "cron": cron,
            "timezone": tz, "catchup": catchup, "max_concurrent": max_concurrent,
            "paused": paused})
    nxt = "paused" if view["paused"] else f"next run {_when(view['next_fire'])}"
    console.print(f"schedule [bold]{esc(name)}[/] in project {esc(c.project)}: "
                  f"{esc(view['pipeline'])} at '{esc(view['cron'])}' ({esc(view['timezone'])}),"
                  f" {nxt}")
    if pkg is not None:
        console.print(f"  code: {len(pkg.files)} file{'s' if len(pkg.files) != 1 else ''} "
                      f"from {esc(pkg.root)} ({format_bytes(pkg.size)}, "
                      f"sha256:{pkg.digest[:12]})", highlight=False)


@schedule.command("ls")
@_PROJECT
def ls(project: str | None) -> None:
    """The project's schedules, with their next and last fire times."""
    with _client(project) as c:
        rows = c.get(c.in_project("schedules"))
    if not rows:
        console.print(f"no schedules in project {esc(c.project)}")
        return
    table = Table(box=None, header_style="bold")
    for col in ("NAME", "PIPELINE", "CRON", "TIMEZONE", "CATCHUP", "MAX", "STATE", "NEXT",
                "LAST", "LAST RUN"):
        table.add_column(col)
    for s in rows:
        table.add_row(esc(s["name"]), esc(s["pipeline"]), esc(s["cron"]), esc(s["timezone"]),
                      s["catchup"], str(s["max_concurrent"]),
                      "paused" if s["paused"] else "active", _when(s["next_fire"]),
                      _when(s["last_fire"]), esc(s["last_run_id"] or "-"))
    console.print(table)


@schedule.command("show")
@click.argument("name")
@_PROJECT
def show(name: str, project: str | None) -> None:
    """A schedule and its latest ticks (fired, or skipped and why)."""
    with _client(project) as c:
        s = c.get(c.in_project("schedules", name))
    for label, value in (
            ("schedule", s["name"]), ("pipeline", s["pipeline"]), ("cron", s["cron"]),
            ("timezone", s["timezone"]), ("catchup", s["catchup"]),
            ("max concurrent", s["max_concurrent"]),
            ("state", "paused" if s["paused"] else "active"),
            ("params", s["params"] or "-"), ("package", s["package"] or "-"),
            ("created by", s["created_by"]), ("next fire", _when(s["next_fire"])),
            ("last fire", _when(s["last_fire"])), ("last run", s["last_run_id"] or "-")):
        console.print(f"[bold]{label:<15}[/]{esc(str(value))}")
    if s.get("ticks"):
        table = Table(box=None, header_style="bold", title="latest ticks",
                      title_justify="left")
        for col in ("TICK", "STATE", "KIND", "RUN", "WHY"):
            table.add_column(col)
        for t in s["ticks"]:
            table.add_row(_when(t["time"]), t["state"], t["kind"], esc(t["run_id"] or "-"),
                          esc(t["reason"] or ""))
        console.print(table)


def _simple(action: str, done: str) -> click.Command:
    @click.argument("name")
    @_PROJECT
    def cmd(name: str, project: str | None) -> None:
        with _client(project) as c:
            if action == "delete":
                c.delete(c.in_project("schedules", name))
            else:
                c.post(c.in_project("schedules", name, action))
        console.print(f"schedule [bold]{esc(name)}[/] {done}")

    cmd.__doc__ = {"pause": "Stop firing NAME's ticks (until resume).",
                   "resume": "Fire NAME's ticks again (those due while paused are not run).",
                   "delete": "Delete NAME and its ticks (its runs stay)."}[action]
    return click.command(action)(cmd)


for _action, _done in (("pause", "paused"), ("resume", "resumed"), ("delete", "deleted")):
    schedule.add_command(_simple(_action, _done))


@schedule.command("backfill")
@click.argument("name")
@click.option("--from", "start", required=True,
              help="first time, ISO 8601 (a wall time in the schedule's zone), e.g. 2026-03-01")
@click.option("--to", "end", required=True, help="last time, e.g. 2026-03-07T23:59")
@_PROJECT
def backfill(name: str, start: str, end: str, project: str | None) -> None:
    """Run NAME for every tick from --from to --to that has not run yet."""
    with _client(project) as c:
        out = c.post(c.in_project("schedules", name, "backfill"), {"from": start, "to": end})
    for t in out["created"]:
        console.print(f"  {_when(t['time'])}  run {esc(t['run_id'])}")
    console.print(f"{len(out['created'])} run(s) created; {len(out['existing'])} tick(s) "
                  "in the range had been recorded already")
