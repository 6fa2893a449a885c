"""``insitu datasets``: register datasets and see where every shard lives."""

from __future__ import annotations

import json

import click
from rich.table import Table

from insitu._units import format_bytes
from insitu.cli._common import _store, console, esc


@click.group()
def datasets() -> None:
    """Register datasets (sharded files on nodes or at URLs) and list them."""


@datasets.command("add")
@click.argument("name")
@click.argument("sources", nargs=-1, required=True)
@click.option("--node", default="local", show_default=True,
              help="The node whose local disk holds these paths.")
@click.option("--description", default="")
def add_cmd(name: str, sources: tuple[str, ...], node: str, description: str) -> None:
    """Register SOURCES (files, folders, globs, or fsspec URLs) as shards of NAME."""
    from insitu.datasets import add

    ds = add(name, list(sources), node=node, description=description, store=_store())
    console.print(f"dataset [bold]{ds.name}[/]: {len(ds.shard_records)} shards, "
                  f"{format_bytes(ds.size)}")


@datasets.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def ls_cmd(as_json: bool) -> None:
    """List datasets."""
    from insitu.datasets import list_datasets

    dss = list_datasets(store=_store())
    if as_json:
        click.echo(json.dumps([{"name": d.name, "shards": len(d.shard_records), "bytes": d.size}
                               for d in dss], indent=2))
        return
    tbl = Table()
    for col in ("dataset", "shards", "size", "nodes"):
        tbl.add_column(col)
    for d in dss:
        nodes = sorted({r.get("node") or "url" for s in d.shard_records for r in s.replicas})
        tbl.add_row(d.name, str(len(d.shard_records)), format_bytes(d.size), ", ".join(nodes))
    console.print(tbl)
    if not dss:
        console.print("no datasets yet: `insitu datasets add NAME FILES... [--node NODE]`")


@datasets.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show_cmd(name: str, as_json: bool) -> None:
    """Every shard of NAME: size, content hash, and where its replicas live."""
    from insitu.datasets import dataset

    d = dataset(name, store=_store())
    if as_json:
        click.echo(json.dumps(d.shards(), indent=2))
        return
    console.print(f"[bold]dataset {d.name}[/]: {len(d.shard_records)} shards, "
                  f"{format_bytes(d.size)}")
    tbl = Table()
    for col in ("shard", "size", "sha256", "replicas"):
        tbl.add_column(col)
    for s in d.shard_records:
        tbl.add_row(s.shard, format_bytes(s.size), s.digest[:12],
                    "; ".join((f"{r['node']}:{r['path']}" if r.get("node") else r["url"])
                              + (" (cached)" if r.get("cached") else "") for r in s.replicas))
    console.print(tbl)
