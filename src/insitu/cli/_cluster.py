"""``insitu cluster``: start, inspect and stop a local multi-node Ray cluster."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from insitu._units import format_bytes, parse_memory
from insitu.cli._app import console
from insitu.errors import UserError


def _base_dir(ctx: click.Context, param: click.Parameter, value: str | None) -> Path | None:
    if value is None:
        return None
    if not value.strip():
        raise UserError("--base-dir is empty",
                        hint="give a directory (e.g. --base-dir /tmp/my-cluster), or leave the "
                             "option out to use the default")
    path = Path(value).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise UserError(f"--base-dir {value}: {path} is not a directory",
                        hint="give a directory (new or one `insitu cluster up` made)")
    return path


_BASE = click.option("--base-dir", default=None, callback=_base_dir,
                     help="where the cluster keeps its state, Ray files and node data "
                          "directories (default: /tmp/insitu-ray-UID; keep it short)")


def _ray_missing() -> UserError:
    return UserError("Ray is not installed", hint='pip install "ray==2.60.0"')


@click.group()
def cluster() -> None:
    """A multi-node Ray cluster on this machine, to try insitu's Ray backend on a laptop."""


@cluster.command("up")
@click.option("--local", "n", type=click.IntRange(min=1), required=True,
              help="number of Ray nodes to start on this machine (a head and N-1 workers)")
@click.option("--cpus-per-node", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--memory-per-node", default="2GiB", show_default=True)
@click.option("--isolated", is_flag=True,
              help="give each node a network namespace of its own, linked to this machine "
                   "at --mbit (needs root); a head with no CPUs runs beside the engine")
@click.option("--mbit", type=click.FloatRange(min=1), default=200.0, show_default=True,
              help="with --isolated: each node's link bandwidth, in Mbit/s")
@_BASE
def up(n: int, cpus_per_node: int, memory_per_node: str, isolated: bool, mbit: float,
       base_dir: Path | None) -> None:
    """Start N local Ray nodes, each with its own CPUs, memory, labels and data directory."""
    try:
        from insitu.executor._ray_cluster import LocalRayCluster
    except ImportError:
        raise _ray_missing() from None
    memory = parse_memory(memory_per_node, what="--memory-per-node")
    c = LocalRayCluster(base_dir)
    with console.status(f"starting {n} Ray node(s)..."):
        address = c.up(n, cpus_per_node=cpus_per_node, memory_per_node=memory,
                       isolated=isolated, network_mbit=mbit if isolated else None)
    console.print(f"Ray cluster of {n} node(s) up at [bold]{address}[/bold]")
    _print_nodes(address)
    console.print(f"\nRun a pipeline on it:  insitu run --backend ray --address {address} "
                  "PIPELINE\n(or export RAY_ADDRESS=" + address + ")\n"
                  "Stop it:  insitu cluster down" +
                  (f" --base-dir {base_dir}" if base_dir else ""))


@cluster.command("down")
@_BASE
def down(base_dir: Path | None) -> None:
    """Stop the local Ray cluster: only the processes it recorded (by PID and start time,
    and the sessions it started), never others by name; any other Ray is left alone."""
    try:
        from insitu.executor._ray_cluster import LocalRayCluster
    except ImportError:
        raise _ray_missing() from None
    c = LocalRayCluster.load(base_dir)
    if c is None:
        console.print(f"no local Ray cluster is recorded under {LocalRayCluster(base_dir).base}"
                      " (nothing to stop)")
        return
    stopped = c.down()
    console.print(f"stopped {stopped} Ray process(es) of the cluster under {c.base}" if stopped
                  else f"the cluster under {c.base} had no process left; its record is removed")


@cluster.command("status")
@_BASE
def status(base_dir: Path | None) -> None:
    """Show the local Ray cluster's address and nodes."""
    try:
        from insitu.executor._ray_cluster import LocalRayCluster
    except ImportError:
        raise _ray_missing() from None
    c = LocalRayCluster.load(base_dir)
    if c is None or c.address is None or not c.running():
        raise UserError(f"no local Ray cluster is running under "
                        f"{(c or LocalRayCluster(base_dir)).base}",
                        hint="start one with `insitu cluster up --local 3`")
    console.print(f"Ray cluster at [bold]{c.address}[/bold]")
    _print_nodes(c.address)


def _print_nodes(address: str) -> None:
    from insitu.executor._ray import DATA_DIR_LABEL, RayExecutor
    from insitu.executor._ray_cluster import SPOT_LABEL, ZONE_LABEL

    table = Table("node", "cpu", "memory", "gpus", "zone", "spot", "data directory")
    for n in RayExecutor(address, warm_workers=1).nodes():
        table.add_row(n.name, f"{n.cpu:g}", format_bytes(n.memory), str(len(n.gpus)),
                      n.labels.get(ZONE_LABEL, ""), n.labels.get(SPOT_LABEL, ""),
                      n.labels.get(DATA_DIR_LABEL, ""))
    console.print(table)
