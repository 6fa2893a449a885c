"""``insitu quota``: a project's quota on an ``insitu server`` (set, show, delete).

Talks to the server ``insitu login`` chose (or ``INSITU_SERVER`` with ``INSITU_TOKEN``)
through ``insitu.client``, which turns the server's problem documents into insitu's own
errors with the server's message and fix.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import click
from rich.table import Table

from insitu.cli._common import console, esc, server_client
from insitu.errors import UserError


def _path(project: str) -> str:
    return f"/api/v1/projects/{quote(project, safe='')}/quota"


def _pairs(values: tuple[str, ...], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for v in values:
        k, sep, amount = v.partition("=")
        if not sep or not k.strip() or not amount.strip():
            raise UserError(f"{what} {v!r} is not RESOURCE=AMOUNT",
                            hint=f"e.g. {what} cpu=4, {what} memory=16GiB or "
                                 f"{what} gpu:A100=1")
        out[k.strip()] = _number(k.strip(), amount.strip(), what)
    return out


def _number(k: str, v: str, what: str) -> Any:
    if k == "memory":
        return v
    try:
        return float(v)
    except ValueError:
        raise UserError(f"{what} {k}={v}: {v!r} is not a number",
                        hint=f"e.g. {k}=4") from None


@click.group()
def quota() -> None:
    """A project's quota on the server: CPU, memory, GPUs (by type), cohort limits."""


@quota.command("set")
@click.argument("project")
@click.option("--cpu", type=float, default=None, help="CPU cores.")
@click.option("--memory", default=None, help="Memory, e.g. 64GiB.")
@click.option("--gpu", type=float, default=None,
              help="GPUs of any type (fractions count milli-GPUs, e.g. 2.5).")
@click.option("--gpu-type", "gpu_types", multiple=True, metavar="MODEL=N",
              help="GPUs of one model, e.g. A100=4 (repeatable).")
@click.option("--cohort", default=None, help="The cohort it borrows from and lends to.")
@click.option("--borrow", "borrow", multiple=True, metavar="RESOURCE=AMOUNT",
              help="Borrowing limit, e.g. cpu=8 or gpu:A100=1 (repeatable).")
@click.option("--lend", "lend", multiple=True, metavar="RESOURCE=AMOUNT",
              help="Lending limit, e.g. cpu=8 or gpu:A100=1 (repeatable).")
@click.option("--force", is_flag=True,
              help="Set it even below what runs now: running work continues, new work waits.")
def set_cmd(project: str, cpu: float | None, memory: str | None, gpu: float | None,
            gpu_types: tuple[str, ...], cohort: str | None, borrow: tuple[str, ...],
            lend: tuple[str, ...], force: bool) -> None:
    """Set PROJECT's quota (resources left out are not limited)."""
    q: dict[str, Any] = {}
    if cpu is not None:
        q["cpu"] = cpu
    if memory is not None:
        q["memory"] = memory
    if gpu is not None:
        q["gpu"] = gpu
    for model, n in _pairs(gpu_types, "--gpu-type").items():
        q[f"gpu:{model}"] = n
    body = {"quota": q, "cohort": cohort, "borrowing_limit": _pairs(borrow, "--borrow"),
            "lending_limit": _pairs(lend, "--lend"), "force": force}
    with server_client("quotas") as c:
        view = c.put(_path(project), body)
    console.print(f"quota of project {esc(project)} set")
    _print(view)


@quota.command("show")
@click.argument("project")
def show_cmd(project: str) -> None:
    """Show PROJECT's quota and what its running work uses."""
    with server_client("quotas") as c:
        view = c.get(_path(project))
    _print(view)


@quota.command("delete")
@click.argument("project")
def delete_cmd(project: str) -> None:
    """Remove PROJECT's quota: its work is no longer limited."""
    with server_client("quotas") as c:
        c.delete(_path(project))
    console.print(f"project {esc(project)} has no quota now (not limited)")


def _amount(k: str, v: Any) -> str:
    if v is None:
        return "-"
    if k == "memory":
        from insitu._units import format_bytes

        return format_bytes(int(v))
    return f"{float(v):g}"


def _print(view: dict[str, Any]) -> None:
    p = view["project"]
    if view.get("quota") is None:
        console.print(f"project {esc(p)} has no quota (not limited); its running work uses "
                      + ", ".join(f"{_amount(k, v)} {k}" for k, v in view["use"].items()))
        return
    cohort = view.get("cohort")
    console.print(f"project {esc(p)}" + (f", cohort {esc(cohort)}" if cohort else
                                          ", no cohort") +
                  f": {view['running']} steps admitted, {view['waiting']} waiting")
    t = Table("resource", "quota", "in use", "borrowing limit", "lending limit")
    keys = list(dict.fromkeys([*view["quota"], *view["borrowing_limit"],
                               *view["lending_limit"]]))
    for k in keys:
        t.add_row(esc(k), _amount(k, view["quota"].get(k)) if k in view["quota"]
                  else "unlimited", _amount(k, view["use"].get(k, 0)),
                  _amount(k, view["borrowing_limit"].get(k)),
                  _amount(k, view["lending_limit"].get(k)))
    console.print(t)
