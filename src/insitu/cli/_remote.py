"""The commands against an ``insitu server``: ``login``/``logout``, and the server side of
``run``, ``resume``, ``cancel``, ``logs`` and ``delete`` (``runs`` and ``show`` read the
server through the same code as locally). What they print is built by the same renderers as
the local commands, from records made of the API's JSON."""

from __future__ import annotations

import sys
import time
from types import SimpleNamespace
from typing import Any

import click

from insitu.cli._common import console, err_console, esc
from insitu.client import Client, Credentials, credentials_path, forget, remember
from insitu.client._credentials import DEFAULT_PROJECT, normalise_url
from insitu.client._runs import (
    get_attempts,
    get_steps,
    get_view,
    run_record,
    submit,
    task_records,
    wait,
)
from insitu.errors import NotFound, UserError
from insitu.store import _records as S


@click.command()
@click.argument("url")
@click.option("--token", default=None, metavar="TOKEN",
              help="The API token (default: read from stdin, or asked for without echo).")
@click.option("--project", "project", default=None, metavar="NAME",
              help="The project commands act on (default: the token's project, "
                   "INSITU_PROJECT, else 'default').")
def login(url: str, token: str | None, project: str | None) -> None:
    """Use the insitu server at URL: check the token and keep it in INSITU_HOME
    (credentials.toml, readable by you only); then run, runs, show, logs, cancel, resume
    and delete act on that server."""
    import os
    from urllib.parse import quote

    server = normalise_url(url)
    if token is None:
        if sys.stdin.isatty():
            token = click.prompt("API token", hide_input=True, default="",
                                 show_default=False)
        else:
            token = sys.stdin.readline()
    token = (token or "").strip()
    if not token:
        raise UserError("no API token was given",
                        hint=f"insitu login {server} --token TOKEN (or pipe it on stdin); an "
                             "administrator makes tokens (insitu server init prints the first)")
    given = Credentials(server=server, token=token, source="the token given to insitu login",
                        server_source="the URL given to insitu login")
    with Client(given) as c:
        who = c.get("/api/v1/whoami")
        chosen = project or who.get("scope") or os.environ.get("INSITU_PROJECT") \
            or DEFAULT_PROJECT
        try:
            info = c.get(f"/api/v1/projects/{quote(chosen, safe='')}")
        except NotFound as e:
            known = [p["name"] for p in c.get("/api/v1/projects")]
            raise UserError(f"{who['user']} cannot use project {chosen!r} on {server}: "
                            f"{e.message}",
                            hint=("choose one with --project: " + ", ".join(sorted(known)))
                            if known else "ask an owner of the project to add you") from None
    path = remember(Credentials(server=server, token=token, project=chosen))
    console.print(f"logged in to {esc(server)} as [bold]{esc(who['user'])}[/]"
                  f"{' (administrator)' if who.get('admin') else ''}, project "
                  f"[bold]{esc(chosen)}[/] (role {esc(info.get('role') or '?')})")
    console.print(f"the server and token are kept in {esc(path)} (readable by you only); "
                  "`insitu logout` forgets them")
    if os.environ.get("INSITU_SERVER"):
        console.print("[yellow]note:[/] INSITU_SERVER is set and overrides this login")


@click.command()
def logout() -> None:
    """Forget the server and token `insitu login` kept; commands work locally again."""
    import os

    server = forget()
    if server is None:
        console.print(f"not logged in (no {esc(credentials_path())})")
    else:
        console.print(f"logged out of {esc(server)} (removed {esc(credentials_path())})")
    if os.environ.get("INSITU_SERVER"):
        console.print("[yellow]note:[/] INSITU_SERVER is set: commands still use "
                      f"{esc(os.environ['INSITU_SERVER'])} until you unset it")


# -- run, resume: submit and follow ---------------------------------------------------------

def submit_and_follow(client: Client, spec: dict[str, Any], pairs: tuple[str, ...], *,
                      no_cache: bool, plain: bool, priority: int | None = None) -> int:
    """``insitu run`` against the server: package, upload, submit, follow; the exit code."""
    from insitu._units import format_bytes
    from insitu.engine import bind_params, parse_cli_params

    given = parse_cli_params(list(pairs))
    bound = bind_params(spec, given, from_text=True)  # refused here, before any upload
    values = {k: bound[k] for k in given}
    view, pkg = submit(client, spec, values, no_cache=no_cache,
                       labels=None if priority is None else {"priority": priority})
    console.print(f"run [bold]{view['id']}[/] of pipeline {esc(view['pipeline'])} submitted "
                  f"to {esc(client.server)} (project {esc(client.project)})")
    if pkg is not None:
        console.print(f"  code: {len(pkg.files)} file{'s' if len(pkg.files) != 1 else ''} "
                      f"from {esc(pkg.root)} ({format_bytes(pkg.size)}, "
                      f"sha256:{pkg.digest[:12]})", highlight=False)
    return follow(client, str(view["id"]), plain)


def follow(client: Client, run_id: str, plain: bool) -> int:
    """Show a server run's progress as a local run's, until it ends; Ctrl-C detaches."""
    from insitu.cli._render import LiveProgress, print_outcome

    live = LiveProgress(console)
    if plain:
        live.plain = True

    def update(view: dict[str, Any]) -> None:
        tasks = task_records(run_id, view.get("tasks") or [])
        live(SimpleNamespace(run_rec=run_record(view), tasks={t.id: t for t in tasks},
                             running=view["state"] not in S.RUN_TERMINAL))

    try:
        with live:
            view = wait(client, run_id, on_update=update)
    except KeyboardInterrupt:
        err_console.print(f"detached: run {esc(run_id)} goes on on {esc(client.server)}")
        err_console.print(f"follow it: insitu logs {esc(run_id)} --follow   "
                          f"stop it: insitu cancel {esc(run_id)}")
        return 130
    tasks = get_steps(client, run_id)
    return print_outcome(console, err_console, run_record(view), tasks,
                         get_attempts(client, run_id, tasks))


def resume_remote(client: Client, run_id: str, plain: bool) -> int:
    view = get_view(client, run_id)
    if view["state"] == S.RUN_SUCCEEDED:
        console.print(f"run {esc(view['id'])} already succeeded; nothing to resume.")
        return 0
    view = client.post(client.in_project("runs", str(view["id"]), "resume"))
    console.print(f"resuming run [bold]{esc(view['id'])}[/] of pipeline "
                  f"{esc(view['pipeline'])} on {esc(client.server)}")
    return follow(client, str(view["id"]), plain)


# -- cancel, delete --------------------------------------------------------------------------

def cancel_remote(client: Client, run_id: str, wait_s: float = 60.0) -> None:
    view = get_view(client, run_id)
    rid = str(view["id"])
    if view["state"] in S.RUN_TERMINAL:
        console.print(f"run {esc(rid)} is already {esc(view['state'])}.")
        return
    answer = client.post(client.in_project("runs", rid, "cancel"))
    if not answer.get("cancel_requested"):
        console.print(f"run {esc(rid)} cancelled (no engine was running it).")
        return
    deadline = time.monotonic() + wait_s  # its engine on the server stops its attempts
    state = str(answer.get("state"))
    while state not in S.RUN_TERMINAL and time.monotonic() < deadline:
        time.sleep(0.3)
        state = str(get_view(client, rid)["state"])
    if state in S.RUN_TERMINAL:
        console.print(f"run {esc(rid)} {esc(state)}.")
    else:
        console.print(f"run {esc(rid)}: cancel requested; its engine on the server is "
                      f"stopping it (see insitu show {esc(rid)})")


def delete_remote(client: Client, run_id: str, yes: bool) -> None:
    view = get_view(client, run_id)
    rid = str(view["id"])
    if not yes and sys.stdin.isatty():
        click.confirm(f"delete run {rid} ({view['pipeline']}, {view['state']}) on "
                      f"{client.server}?", abort=True)
    client.delete(client.in_project("runs", rid))
    console.print(f"deleted run {esc(rid)} on {esc(client.server)}")


# -- logs --------------------------------------------------------------------------------------

def _prefix(task_id: str, attempt: int, stream: str) -> str:
    return f"[{task_id}#{attempt}{' stderr' if stream in ('stderr', 'err') else ''}] "


def logs_remote(client: Client, run_id: str, step: str | None, attempt: int | None,
                follow_: bool, rank: int = 0) -> None:
    """``insitu logs`` of a server run: the same lines, read over the API (``--follow``:
    the server's event stream until the run ends)."""
    from insitu.cli._render import log_tasks, report_silent, step_tasks
    from insitu.client._runs import read_log

    view = get_view(client, run_id)
    rid = str(view["id"])
    tasks = get_steps(client, rid)
    tasks = log_tasks(tasks, rid, step, attempt)
    if attempt is not None and len(tasks) == 1 and attempt > tasks[0].attempts \
            and not follow_:
        t = tasks[0]
        raise NotFound(f"step {t.id} of run {rid} has {t.attempts} attempt(s), not "
                       f"{attempt}", hint=f"insitu logs {rid} {t.id}"
                       + (f" --attempt {t.attempts}" if t.attempts else ""))
    printed: set[str] = set()
    if not follow_:
        for t in sorted(tasks, key=lambda t: t.seq):
            n = attempt or t.attempts
            if n == 0 or n > t.attempts:
                continue
            for stream in ("stdout", "stderr"):
                text = "".join(read_log(client, rid, t.id, attempt=n, stream=stream,
                                        rank=rank))
                who = _prefix(t.id, n, stream)
                if rank:
                    who = who.replace(f"{t.id}#{n}", f"{t.id}#{n} rank {rank}", 1)
                for line in text.splitlines():
                    printed.add(t.id)
                    click.echo(who + line)
    else:
        wanted = {t.id for t in tasks} if step is not None else None
        only = tasks[0].id if step is not None and len(tasks) == 1 else None
        partial: dict[tuple[str, int, str], str] = {}
        for event, data in client.events(client.in_project("runs", rid, "logs", "stream"),
                                         step=only):
            if event == "end":
                break
            if event != "log" or not isinstance(data, dict):
                continue
            tid, n, stream = str(data.get("step")), int(data.get("attempt") or 0), \
                str(data.get("stream") or "stdout")
            if (wanted is not None and tid not in wanted) or (attempt and n != attempt):
                continue
            key = (tid, n, stream)
            lines = (partial.pop(key, "") + str(data.get("text") or "")).split("\n")
            if lines[-1]:
                partial[key] = lines[-1]  # an unfinished line waits for its end
            for line in lines[:-1]:
                printed.add(tid)
                click.echo(_prefix(tid, n, stream) + line)
        for (tid, n, stream), rest in partial.items():
            printed.add(tid)
            click.echo(_prefix(tid, n, stream) + rest)
        tasks = get_steps(client, rid)
        if step is not None:
            tasks = step_tasks(tasks, step)
    report_silent(err_console, rid, tasks, printed, step, attempt)
