"""``insitu notebook``: JupyterLab servers run by an ``insitu server``, reached through its
proxy (``start``, ``ls``, ``show``, ``stop``, ``delete``), in the project ``--project`` (else
``INSITU_PROJECT``, else the login's project, else ``default``)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from insitu.cli._app import console
from insitu.cli._common import PROJECT_OPTION, esc, server_client

if TYPE_CHECKING:
    from insitu.client import Client

_PROJECT = PROJECT_OPTION


def _client(project: str | None) -> Client:
    return server_client("notebooks", project)


def _when(t: float | None) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def _print(n: dict[str, Any]) -> None:
    from insitu._units import format_bytes

    p = n.get("placement") or {}
    rows = [("notebook", n["name"]), ("project", n["project"]), ("state", n["state"]),
            ("url", n["url"] or "-"),
            ("asked", f"cpu {n['cpu']:g}, memory {format_bytes(n['memory'])}"
                      + (f", gpu {n['gpu']:g}" if n["gpu"] else "")),
            ("placed on", p.get("node", "-") + (f" (GPUs {p['gpu_ids']})"
                                                 if p.get("gpu_ids") else "")),
            ("near", n["near"] or "-"),
            ("idle stop", f"after {n['idle_s']:g} s" if n["idle_s"] else "never"),
            ("last active", _when(n["active_at"])), ("started", _when(n["started_at"])),
            ("environment", n.get("environment") or "-"), ("home", n.get("home") or "-")]
    if n["state"] == "waiting":
        rows.append(("waiting for", n["reason"] or "-"))
    elif n["reason"]:
        rows.append(("why", n["reason"]))
    for label, value in rows:
        console.print(f"[bold]{label:<13}[/]{esc(str(value))}", highlight=False)
    oom = n.get("oom")
    if oom:
        console.print(f"[red]out of memory:[/] {esc(oom['message'])}", highlight=False)
        console.print(f"  peak {format_bytes(oom['peak'])}, limit {format_bytes(oom['limit'])}"
                      f"; restart with more memory:\n  {esc(oom['fix'])}", highlight=False)


@click.group()
def notebook() -> None:
    """JupyterLab servers placed by the server's scheduler (start, ls, show, stop, delete)."""


@notebook.command("start")
@click.argument("name")
@click.option("--cpu", type=float, default=1.0, show_default=True, help="CPUs reserved")
@click.option("--memory", default="2GiB", show_default=True,
              help="memory reserved, and the limit on its kernels (e.g. 8GiB)")
@click.option("--gpu", type=float, default=0.0, show_default=True,
              help="GPUs (a fraction shares one, e.g. 0.5)")
@click.option("--near", default=None, metavar="DATASET",
              help="place it on the node holding the most of this dataset's shards")
@click.option("--idle", type=float, default=3600.0, show_default=True,
              help="seconds without activity before it is stopped (0: never)")
@_PROJECT
def start(name: str, cpu: float, memory: str, gpu: float, near: str | None, idle: float,
          project: str | None) -> None:
    """Start notebook NAME (a stopped one starts again with its home and environment)."""
    with _client(project) as c:
        n = c.post(c.in_project("notebooks"), {"name": name, "cpu": cpu, "memory": memory,
                                               "gpu": gpu, "near": near, "idle": idle})
    _print(n)


@notebook.command("ls")
@_PROJECT
def ls(project: str | None) -> None:
    """The project's notebooks."""
    from insitu._units import format_bytes

    with _client(project) as c:
        rows = c.get(c.in_project("notebooks"))
    if not rows:
        console.print(f"no notebooks in project {esc(c.project)}")
        return
    table = Table(box=None, header_style="bold")
    for col in ("NAME", "STATE", "CPU", "MEMORY", "GPU", "NODE", "URL / REASON"):
        table.add_column(col)
    for n in rows:
        table.add_row(esc(n["name"]), n["state"], f"{n['cpu']:g}", format_bytes(n["memory"]),
                      f"{n['gpu']:g}", esc((n["placement"] or {}).get("node", "-")),
                      esc(n["url"] or n["reason"] or "-"))
    console.print(table)


@notebook.command("show")
@click.argument("name")
@_PROJECT
def show(name: str, project: str | None) -> None:
    """A notebook: its URL, placement, or why it waits; a kernel that ran out of memory."""
    with _client(project) as c:
        n = c.get(c.in_project("notebooks", name))
    _print(n)


@notebook.command("stop")
@click.argument("name")
@_PROJECT
def stop(name: str, project: str | None) -> None:
    """Stop NAME and free its resources (its home and environment stay)."""
    with _client(project) as c:
        c.post(c.in_project("notebooks", name, "stop"))
    console.print(f"notebook [bold]{esc(name)}[/] stopped")


@notebook.command("delete")
@click.argument("name")
@_PROJECT
def delete(name: str, project: str | None) -> None:
    """Stop NAME and delete it with its home and environment."""
    with _client(project) as c:
        c.delete(c.in_project("notebooks", name))
    console.print(f"notebook [bold]{esc(name)}[/] deleted")
