"""``insitu models``: the model registry from the command line.

With a server configured (``insitu login``, or INSITU_SERVER), every command acts on the
project's registry on the server through its API (``register`` takes a run of that project)
and prints what it prints locally; otherwise on this machine's store."""

from __future__ import annotations

import json
import time
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from insitu.cli._common import _store, console, esc, remote_client


@click.group()
def models() -> None:
    """Register, list, show, alias and delete models.

    Load a version in Python with insitu.models.load("NAME@ALIAS") (or "NAME:VERSION").
    """


@models.command("register")
@click.argument("name")
@click.option("--run", "run_id", required=True, help="The run that produced the model.")
@click.option("--step", required=True, help="The step whose output is the model.")
@click.option("--alias", default=None, help="Also point this alias at the new version.")
@click.option("--description", default="", help="A description of this version.")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="A tag (repeatable).")
def register_cmd(name: str, run_id: str, step: str, alias: str | None, description: str,
                 tags: tuple[str, ...]) -> None:
    """Register the output of STEP in RUN as a new version of model NAME."""
    from insitu.errors import UserError
    from insitu.models import register

    tag_map = {}
    for t in tags:
        k, sep, v = t.partition("=")
        if not sep or not k.strip():
            raise UserError(f"cannot read tag {t!r}", hint="write --tag key=value")
        tag_map[k] = v
    client = remote_client()
    if client is not None:
        v = client.post(client.in_project("models", name, "versions"),
                        {"run": run_id, "step": step, "alias": alias,
                         "description": description, "tags": tag_map})
        number, run, task = v["version"], v["run_id"], v["step"]
    else:
        mv = register(name, run=run_id, step=step, description=description, tags=tag_map,
                      alias=alias, store=_store())
        number, run, task = mv.version, mv.record.run_id, mv.record.task_id
    console.print(f"registered [bold]{esc(name)}:{number}[/] from run {run} step {esc(task)}"
                  + (f" as @{esc(alias)}" if alias else ""))


@models.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def ls_cmd(as_json: bool) -> None:
    """List registered models."""
    from insitu.models import list_models, list_versions

    rows: list[dict[str, Any]] = []
    client = remote_client()
    if client is not None:
        keys = ("name", "versions", "latest", "aliases", "description")
        rows = [{k: m.get(k) for k in keys} for m in client.get(client.in_project("models"))]
    else:
        st = _store()
        for m in list_models(store=st):
            vs = list_versions(m.name, store=st)
            rows.append({"name": m.name, "versions": len(vs),
                         "latest": max((v.version for v in vs), default=None),
                         "aliases": {a: v.version for v in vs for a in v.aliases},
                         "description": m.description})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    tbl = Table()
    for col in ("model", "versions", "latest", "aliases", "description"):
        tbl.add_column(col)
    for r in rows:
        tbl.add_row(Text(r["name"]), str(r["versions"]), str(r["latest"]),
                    Text(", ".join(f"@{a}={v}" for a, v in sorted(r["aliases"].items()))),
                    Text(r["description"] or ""))
    console.print(tbl)
    if not rows:
        console.print("no models yet: `insitu models register NAME --run RUN --step STEP`")


@models.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show_cmd(name: str, as_json: bool) -> None:
    """Versions of model NAME with their aliases and lineage."""
    from insitu.models import list_versions

    client = remote_client()
    flavors: dict[int, str] = {}
    if client is not None:
        keys = ("version", "aliases", "run_id", "step", "created_at", "tags", "description",
                "lineage")
        got = client.get(client.in_project("models", name))
        rows = [{k: v.get(k) for k in keys} for v in got["versions"]]
        flavors = {v["version"]: v.get("flavor") or "" for v in got["versions"]}
    else:
        versions = list_versions(name, store=_store())
        rows = [{"version": v.version, "aliases": list(v.aliases), "run_id": v.record.run_id,
                 "step": v.record.task_id, "created_at": v.record.created_at,
                 "tags": v.record.tags, "description": v.record.description,
                 "lineage": v.lineage} for v in versions]
        flavors = {v.version: v.record.flavor for v in versions}
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    print_versions(name, rows, flavors)


def print_versions(name: str, rows: list[dict[str, Any]],
                   flavors: dict[int, str] | None = None) -> None:
    """``insitu models show``: each version (as ``--json`` prints it) with its lineage."""
    console.print(f"[bold]model {esc(name)}[/]")
    for v in rows:
        lin = v["lineage"] or {}
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v["created_at"]))
        alias = f"  @{', @'.join(v['aliases'])}" if v["aliases"] else ""
        console.print(f"\n[bold]version {v['version']}[/]{esc(alias)}   registered {when}")
        if v["description"]:
            console.print(Text(f"  {v['description']}"))
        flavor = (flavors or {}).get(v["version"])
        if flavor:
            console.print(Text(f"  flavour  {flavor} (served by `insitu serve "
                               f"{name}:{v['version']}`)"))
        console.print(Text(f"  from run {lin.get('run_id')} (pipeline {lin.get('pipeline')}), "
                           f"step {lin.get('step')}"))
        console.print(Text(f"  code     {lin.get('function')} fingerprint "
                           f"{(lin.get('code_fingerprint') or '')[:12]}"))
        params = {**lin.get("params", {}), **lin.get("step_params", {})}
        if params:
            console.print(Text("  params   " + ", ".join(f"{k}={params[k]!r}"
                                                      for k in sorted(params))))
        if lin.get("inputs"):
            console.print(Text("  inputs   " + ", ".join(f"{k}={str(d)[:12]}"
                                                        for k, d in sorted(lin["inputs"].items()))))
        console.print(Text(f"  datasets {', '.join(lin.get('datasets') or []) or '-'}"))
        if v["tags"]:
            console.print(Text("  tags     " + ", ".join(f"{k}={t}"
                                                      for k, t in v["tags"].items())))


@models.command("alias")
@click.argument("name")
@click.argument("alias")
@click.argument("version", type=click.IntRange(min=1, max=2**31 - 1))
def alias_cmd(name: str, alias: str, version: int) -> None:
    """Point NAME@ALIAS at VERSION (moved atomically)."""
    from insitu.models import set_alias

    client = remote_client()
    if client is not None:
        client.put(client.in_project("models", name, "aliases", alias), {"version": version})
    else:
        set_alias(name, alias, version, store=_store())
    console.print(Text(f"{name}@{alias} -> version {version}"))


@models.command("delete")
@click.argument("name")
@click.argument("version", type=click.IntRange(min=1, max=2**31 - 1))
def delete_cmd(name: str, version: int) -> None:
    """Delete version VERSION of model NAME (refused while an alias points at it)."""
    from insitu.models import delete_version

    client = remote_client()
    if client is not None:
        client.delete(client.in_project("models", name, "versions", str(version)))
    else:
        delete_version(name, version, store=_store())
    console.print(Text(f"deleted {name}:{version}"))
