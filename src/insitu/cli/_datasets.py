"""``insitu datasets``: register datasets and see where every shard lives.

With a server configured (``insitu login``, or INSITU_SERVER), ``ls`` and ``show`` read the
project's datasets from it and print the same tables from the API's JSON; ``add`` registers
files of this machine in its own store only, so it is refused there with how to run it
locally."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from insitu._units import format_bytes
from insitu.cli._common import _store, console, esc, remote_client


@click.group()
def datasets() -> None:
    """Register datasets (sharded files on nodes or at URLs) and list them."""


@datasets.command("add")
@click.argument("name")
@click.argument("sources", nargs=-1, required=True)
@click.option("--node", default="local", show_default=True,
              help="The node whose local disk holds these paths: 'local' (this machine), a "
                   "node of the cluster `insitu cluster up` started, or a node that already "
                   "holds shards.")
@click.option("--new-node", is_flag=True,
              help="Accept a --node insitu does not know yet (a node of a Ray cluster that "
                   "`insitu cluster up` did not start).")
@click.option("--description", default="")
def add_cmd(name: str, sources: tuple[str, ...], node: str, new_node: bool,
            description: str) -> None:
    """Register SOURCES (files, folders, globs, or fsspec URLs) as shards of NAME."""
    from insitu.cli._common import local_only
    from insitu.datasets import add

    local_only("datasets add")
    store = _store()
    if not new_node:
        known = known_nodes(store)
        if node not in known:
            from insitu.errors import not_found

            raise not_found("node", node, known,
                            otherwise=f"known nodes: {', '.join(sorted(known))}; to register "
                                      "shards on another node of your Ray cluster, add "
                                      "--new-node")
    ds = add(name, list(sources), node=node, description=description, store=store)
    console.print(f"dataset [bold]{esc(ds.name)}[/]: {len(ds.shard_records)} shards, "
                  f"{format_bytes(ds.size)}")


def known_nodes(store: Any) -> set[str]:
    """The nodes ``--node`` may name: this machine ('local'), the nodes of the local cluster
    `insitu cluster up` recorded, and every node that already holds a registered shard."""
    from insitu.store import ShardRecord

    known = {"local"}
    try:
        from insitu.executor._ray_cluster import LocalRayCluster

        cluster = LocalRayCluster.load()
        if cluster is not None:
            known |= {n.name for n in cluster.nodes}
    except Exception:  # noqa: BLE001 - an unreadable cluster state adds no nodes
        pass
    for shard in store.select(ShardRecord):
        known |= {r["node"] for r in shard.replicas if r.get("node")}
    return known


@datasets.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def ls_cmd(as_json: bool) -> None:
    """List datasets."""
    from insitu.datasets import list_datasets

    client = remote_client()
    if client is not None:
        rows = [{k: d.get(k) for k in ("name", "shards", "bytes", "nodes")}
                for d in client.get(client.in_project("datasets"))]
    else:
        rows = [{"name": d.name, "shards": len(d.shard_records), "bytes": d.size,
                 "nodes": sorted({r.get("node") or "url" for s in d.shard_records
                                  for r in s.replicas})}
                for d in list_datasets(store=_store())]
    if as_json:
        click.echo(json.dumps([{k: r[k] for k in ("name", "shards", "bytes")} for r in rows],
                              indent=2))
        return
    tbl = Table()
    for col in ("dataset", "shards", "size", "nodes"):
        tbl.add_column(col)
    for r in rows:
        tbl.add_row(Text(r["name"]), str(r["shards"]), format_bytes(r["bytes"]),
                    Text(", ".join(r["nodes"])))
    console.print(tbl)
    if not rows:
        console.print("no datasets yet: `insitu datasets add NAME FILES... [--node NODE]`")


@datasets.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show_cmd(name: str, as_json: bool) -> None:
    """Every shard of NAME: size, content hash, and where its replicas live."""
    from insitu.datasets import dataset

    client = remote_client()
    if client is not None:
        got = client.get(client.in_project("datasets", name))
        keys = ("dataset", "shard", "size", "digest", "replicas")
        title, shards = got["name"], [{k: s[k] for k in keys} for s in got["shards"]]
    else:
        d = dataset(name, store=_store())
        title, shards = d.name, d.shards()
    if as_json:
        click.echo(json.dumps(shards, indent=2))
        return
    console.print(f"[bold]dataset {esc(title)}[/]: {len(shards)} shards, "
                  f"{format_bytes(sum(s['size'] for s in shards))}")
    tbl = Table()
    for col in ("shard", "size", "sha256", "replicas"):
        tbl.add_column(col)
    for s in shards:
        tbl.add_row(Text(s["shard"]), format_bytes(s["size"]), s["digest"][:12],
                    Text("; ".join((f"{r['node']}:{r['path']}" if r.get("node") else r["url"])
                              + (" (cached)" if r.get("cached") else "")
                              for r in s["replicas"])))
    console.print(tbl)
