"""``insitu endpoints``: registered models served by an ``insitu server``.

The commands talk to the server ``insitu login`` chose (or ``INSITU_SERVER`` with
``INSITU_TOKEN``) through ``insitu.client``, in the project ``--project`` (else
``INSITU_PROJECT``, else the login's project, else ``default``). To serve on this machine
with no server, use ``insitu serve``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from insitu.cli._common import PROJECT_OPTION, console, esc, server_client

if TYPE_CHECKING:
    from insitu.client import Client

_PROJECT = PROJECT_OPTION
_JSON = click.option("--json", "as_json", is_flag=True, help="print the API's JSON")


def _client(project: str | None) -> Client:
    return server_client("endpoints", project)


def _settings(f: Any) -> Any:
    for opt in reversed([
            click.option("--replicas", type=click.IntRange(1, 64), default=None,
                         help="a fixed number of replicas (or --min/--max)"),
            click.option("--min", "min_replicas", type=click.IntRange(0, 64), default=None,
                         help="replicas kept (0: scale to zero when idle; default 1)"),
            click.option("--max", "max_replicas", type=click.IntRange(1, 64), default=None,
                         help="replicas at most (default 1); resources are reserved for "
                              "this many"),
            click.option("--cpu", type=click.FloatRange(0, min_open=True), default=None,
                         help="CPUs reserved per replica (default 0.5)"),
            click.option("--memory", default=None, metavar="SIZE",
                         help="each replica's memory, reserved and enforced, e.g. 1GiB"),
            click.option("--gpu", type=click.FloatRange(0, min_open=True), default=None,
                         help="GPUs per replica (a fraction shares one)"),
            click.option("--canary", default=None, metavar="VERSION",
                         help="a second version taking --canary-percent of the requests "
                              "(4, NAME:4 or NAME@ALIAS)"),
            click.option("--canary-percent", "canary_percent", type=click.FloatRange(0, 100),
                         default=None, help="the canary's share, in percent (default 10)"),
            click.option("--shadow", default=None, metavar="VERSION",
                         help="a version that gets a copy of the requests; its answers are "
                              "logged, never returned"),
            click.option("--shadow-percent", type=click.FloatRange(0, 100), default=None,
                         help="the share mirrored to --shadow (default 100)"),
            click.option("--target-concurrency", type=click.FloatRange(0.1, 10_000),
                         default=None, help="requests in flight per replica before another "
                                            "starts (default 16)"),
            click.option("--idle", "idle_seconds", type=click.FloatRange(0.1, 86_400),
                         default=None, help="seconds idle before scaling to zero (--min 0)"),
            click.option("--payloads", type=click.FloatRange(0, 1), default=None,
                         help="the share of requests whose payloads are logged")]):
        f = opt(f)
    return f


def _status(ep: dict[str, Any]) -> str:
    s = ep["status"]
    return str(s["state"])


@click.group()
def endpoints() -> None:
    """Models served by the server (create, ls, show, logs, update, traffic, promote,
    rollback, delete)."""


@endpoints.command("create")
@click.argument("name")
@click.option("--model", required=True, metavar="REF",
              help="the registered model: NAME@ALIAS, NAME:VERSION or NAME (the latest)")
@_settings
@_PROJECT
@_JSON
def create(name: str, model: str, project: str | None, as_json: bool, **kw: Any) -> None:
    """Serve a registered model of the project as endpoint NAME."""
    from insitu.client._endpoints import create as create_endpoint

    with _client(project) as c:
        ep = create_endpoint(c, name, model, **kw)
        if as_json:
            click.echo(json.dumps(ep, indent=2))
            return
        from insitu.client._endpoints import url

        base = url(c, name)
    r = ep["reserved"]
    console.print(f"endpoint [bold]{esc(name)}[/] in project {esc(ep['project'])}: "
                  f"{esc(ep['model'])}, {_replicas(ep)}, reserving {r['cpu']:g} CPU"
                  + (f", {_bytes(r['memory'])}" if r["memory"] else "")
                  + (f", {r['gpu']:g} GPU" if r["gpu"] else "")
                  + f" ({_status(ep)})", highlight=False)
    console.print(f"  infer: POST {esc(base)}/v2/models/{esc(name)}/infer "
                  "(Authorization: Bearer TOKEN)", soft_wrap=True, highlight=False)


def _bytes(n: int) -> str:
    from insitu._units import format_bytes

    return format_bytes(n)


def _replicas(ep: dict[str, Any]) -> str:
    c = ep["config"]
    lo, hi = c.get("min_replicas", 1), c.get("max_replicas", 1)
    return f"{lo} replica{'s' if lo != 1 else ''}" if lo == hi else f"{lo}..{hi} replicas"


@endpoints.command("ls")
@_PROJECT
@_JSON
def ls(project: str | None, as_json: bool) -> None:
    """The project's endpoints and their state."""
    from insitu.client._endpoints import list_endpoints

    with _client(project) as c:
        rows = list_endpoints(c)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        console.print(f"no endpoints in project {esc(c.project)}")
        return
    table = Table(box=None, header_style="bold")
    for col in ("NAME", "MODEL", "REPLICAS", "CPU", "MEMORY", "GPU", "STATE", "RESTARTS",
                "WHY"):
        table.add_column(col)
    for ep in rows:
        s, r = ep["status"], ep["reserved"]
        table.add_row(esc(ep["name"]), esc(ep["model"]), _replicas(ep), f"{r['cpu']:g}",
                      _bytes(r["memory"]) if r["memory"] else "-",
                      f"{r['gpu']:g}" if r["gpu"] else "-", s["state"], str(s["restarts"]),
                      esc((s.get("reason") or "").splitlines()[0] if s.get("reason") else ""))
    console.print(table)


@endpoints.command("show")
@click.argument("name")
@_PROJECT
@_JSON
def show(name: str, project: str | None, as_json: bool) -> None:
    """An endpoint: its model, settings, state (and why), replicas."""
    from insitu.client._endpoints import get, url

    with _client(project) as c:
        ep = get(c, name)
        base = url(c, name)
    if as_json:
        click.echo(json.dumps(ep, indent=2))
        return
    s, r, cfg = ep["status"], ep["reserved"], ep["config"]
    t = cfg.get("traffic") or {}
    traffic = "-"
    if t.get("canary"):
        traffic = f"canary {t['canary']} at {t.get('percent', 0):g} %"
    if t.get("shadow"):
        traffic = ("" if traffic == "-" else traffic + "; ") + \
            f"shadow {t['shadow']} ({t.get('shadow_percent', 100):g} %)"
    for label, value in (
            ("endpoint", ep["name"]), ("model", ep["model"]), ("replicas", _replicas(ep)),
            ("reserved", f"{r['cpu']:g} CPU" + (f", {_bytes(r['memory'])}" if r["memory"]
                                                 else "") + (f", {r['gpu']:g} GPU"
                                                             if r["gpu"] else "")),
            ("traffic", traffic), ("state", s["state"]), ("node", s.get("node") or "-"),
            ("restarts", s.get("restarts", 0)), ("created by", ep.get("created_by") or "-"),
            ("url", f"{base}/v2/models/{ep['name']}")):
        console.print(f"[bold]{label:<12}[/]{esc(str(value))}", highlight=False)
    if s.get("reason"):
        console.print(f"[bold]{'why':<12}[/]{esc(s['reason'])}", highlight=False)
    live = ep.get("live") or {}
    for ref, v in sorted((live.get("versions") or {}).items()):
        line = f"version {ref}: {v.get('ready', 0)} ready, {v.get('in_flight', 0)} in flight"
        if v.get("load_error"):
            line += f"; cannot load: {v['load_error']}"
        if v.get("deaths"):
            line += f"; {len(v['deaths'])} replica death(s), last: {v['deaths'][-1]}"
        console.print(f"  {esc(line)}", highlight=False)


@endpoints.command("logs")
@click.argument("name")
@click.option("--tail", type=click.IntRange(1, 100_000), default=100, show_default=True,
              help="lines from the end of each log")
@click.option("--payloads", type=click.IntRange(0, 10_000), default=0,
              help="also the newest N logged payloads")
@_PROJECT
def logs(name: str, tail: int, payloads: int, project: str | None) -> None:
    """The endpoint's log (its serving process) and each replica's, kept after it ends."""
    from insitu.client._endpoints import logs as get_logs

    with _client(project) as c:
        doc = get_logs(c, name, tail=tail, payloads=payloads)
    console.print("[bold]== endpoint[/]")
    for line in doc["endpoint"]:
        console.print(esc(line), highlight=False, soft_wrap=True)
    for rep, lines in doc["replicas"].items():
        console.print(f"[bold]== replica {esc(rep)}[/]")
        for line in lines:
            console.print(esc(line), highlight=False, soft_wrap=True)
    if payloads:
        console.print("[bold]== payloads[/]")
        for row in doc.get("payloads", []):
            click.echo(json.dumps(row))


@endpoints.command("update")
@click.argument("name")
@click.option("--model", default=None, metavar="REF", help="serve another model reference")
@_settings
@_PROJECT
def update(name: str, model: str | None, project: str | None, **kw: Any) -> None:
    """Change the model or settings of NAME (it restarts with them)."""
    from insitu.client._endpoints import update as update_endpoint

    with _client(project) as c:
        ep = update_endpoint(c, name, model, **kw)
    console.print(f"endpoint [bold]{esc(name)}[/] updated: {esc(ep['model'])}, "
                  f"{_replicas(ep)}; it restarts with them")


@endpoints.command("traffic")
@click.argument("name")
@click.option("--canary", default=None, metavar="VERSION")
@click.option("--percent", type=click.FloatRange(0, 100), default=10.0, show_default=True)
@click.option("--shadow", default=None, metavar="VERSION")
@click.option("--shadow-percent", type=click.FloatRange(0, 100), default=100.0,
              show_default=True)
@click.option("--ab-header", default=None, metavar="HEADER")
@click.option("--route", "routes", multiple=True, metavar="VALUE=VERSION")
@_PROJECT
def traffic(name: str, canary: str | None, percent: float, shadow: str | None,
            shadow_percent: float, ab_header: str | None, routes: tuple[str, ...],
            project: str | None) -> None:
    """Move NAME's traffic live (no restart): a canary, a shadow, A/B routes; with no
    option, all traffic to the stable version."""
    from insitu.client._endpoints import traffic as set_traffic
    from insitu.errors import UserError

    route_map: dict[str, str | int] = {}
    for r in routes:
        value, sep, ver = r.partition("=")
        if not sep or not value:
            raise UserError(f"--route {r!r} is not VALUE=VERSION", hint="e.g. --route b=4")
        route_map[value] = ver
    with _client(project) as c:
        ep = set_traffic(c, name, canary=canary, percent=percent, shadow=shadow,
                         shadow_percent=shadow_percent, header=ab_header, routes=route_map)
    console.print(f"endpoint [bold]{esc(name)}[/] traffic: "
                  f"{esc(json.dumps(ep['config'].get('traffic')))}", highlight=False)


@endpoints.command("promote")
@click.argument("name")
@_PROJECT
def promote(name: str, project: str | None) -> None:
    """Make NAME's canary the stable version (its alias moves in the registry)."""
    from insitu.client._endpoints import promote as do_promote

    with _client(project) as c:
        ep = do_promote(c, name)
    console.print(f"endpoint [bold]{esc(name)}[/] promoted: {esc(ep['model'])}")


@endpoints.command("rollback")
@click.argument("name")
@_PROJECT
def rollback(name: str, project: str | None) -> None:
    """Send all of NAME's traffic back to the stable version."""
    from insitu.client._endpoints import rollback as do_rollback

    with _client(project) as c:
        do_rollback(c, name)
    console.print(f"endpoint [bold]{esc(name)}[/] rolled back: all traffic to the stable "
                  "version")


@endpoints.command("delete")
@click.argument("name")
@_PROJECT
def delete(name: str, project: str | None) -> None:
    """Stop and delete endpoint NAME (its logs stay on the server)."""
    from insitu.client._endpoints import delete as delete_endpoint

    with _client(project) as c:
        delete_endpoint(c, name)
    console.print(f"endpoint [bold]{esc(name)}[/] deleted")
