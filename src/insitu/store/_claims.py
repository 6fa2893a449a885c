"""Reads and writes of quotas and their claims inside one exclusive transaction
(:meth:`insitu.store.SQLStore.exclusive`): what every engine's quota admission sees and
changes atomically."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from insitu.store import _tables as t
from insitu.store._tenancy import ClaimRecord, QuotaRecord


def _rec(cls: type[Any], row: Any) -> Any:
    m = row._mapping
    return cls(**{f.name: m[f.name] for f in dataclasses.fields(cls)})


def _alive(by: str | None) -> bool:
    """Is the server process ``host:pid`` that runs an endpoint alive? (Unknown for one on
    another host: counted as alive.)"""
    import os
    import socket

    host, _, pid = (by or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


Upsert = Callable[[Connection, sa.Table, tuple[str, ...], list[dict[str, Any]]], None]


class ClaimsTx:
    """The quotas and claims tables, in an open transaction that holds the claims lock;
    also where engines place attempts on nodes they share (:meth:`running_elsewhere`)."""

    def __init__(self, conn: Connection, tables: dict[type, tuple[sa.Table, Any]],
                 upsert: Upsert | None = None, to_row: Callable[[Any], dict[str, Any]]
                 | None = None) -> None:
        self.conn = conn
        self._tables = tables  # record class -> (table, primary key)
        self._upsert = upsert
        self._to_row = to_row

    def running_elsewhere(self, run_id: str | None, alive_since: float, *,
                          endpoints: bool = True) -> list[dict[str, Any]]:
        """The placements (``node``, ``cpu``, ``memory``, ``gpu_ids``, ``gpu_share``, a
        gang's ``ranks``) of what runs on the nodes besides run ``run_id``: the running
        attempts of every other run whose engine has beaten since ``alive_since`` and, with
        ``endpoints``, the server's endpoints that are starting or running; and the notebook servers
        that are starting or running, whose server has beaten since ``alive_since``."""
        a, r = t.attempts.c, t.runs.c
        q = (sa.select(a.placement).select_from(t.attempts.join(t.runs, r.id == a.run_id))
             .where(a.state == "running", a.placement.is_not(None),
                    r.state.in_(("pending", "running")), r.heartbeat_at >= alive_since))
        if run_id is not None:
            q = q.where(r.id != run_id)
        out = [row[0] for row in self.conn.execute(q) if row[0]]
        if endpoints:
            e = t.endpoint_status.c
            q = sa.select(e.placement, e.by).where(e.state.in_(("starting", "running")))
            for placement, by in self.conn.execute(q):
                if placement and _alive(by):
                    gpus, milli = placement.get("gpus") or [], placement.get("gpu_milli") or 0
                    out.append({"node": placement.get("node"), "cpu": placement.get("cpu"),
                                "memory": placement.get("memory"), "gpu_ids": gpus,
                                "gpu_share": milli / 1000 if gpus and milli < 1000 else 0.0})
        n = t.notebooks.c  # running notebook servers hold their resources as attempts do
        q = sa.select(n.placement).where(n.state.in_(("starting", "running")),
                                         n.placement.is_not(None),
                                         n.heartbeat_at >= alive_since)
        return out + [row[0] for row in self.conn.execute(q) if row[0]]

    def upsert(self, *records: Any) -> None:
        """Upsert records of any kind in this transaction (as ``Store.put`` does)."""
        assert self._upsert is not None and self._to_row is not None
        groups: dict[type, list[dict[str, Any]]] = {}
        for rec in records:
            groups.setdefault(type(rec), []).append(self._to_row(rec))
        for cls, rows in groups.items():
            table, pk = self._tables[cls]
            self._upsert(self.conn, table, pk, rows)

    def quotas(self) -> list[QuotaRecord]:
        q = sa.select(t.quotas).order_by(t.quotas.c.project)
        return [_rec(QuotaRecord, r) for r in self.conn.execute(q)]

    def claims(self, project: str | None = None) -> list[ClaimRecord]:
        q = sa.select(t.claims)
        if project is not None:
            q = q.where(t.claims.c.project == project)
        q = q.order_by(t.claims.c.created_at, t.claims.c.run_id, t.claims.c.task_id)
        return [_rec(ClaimRecord, r) for r in self.conn.execute(q)]

    def runs(self, ids: Iterable[str]) -> dict[str, tuple[str, float | None]]:
        """run id -> (state, heartbeat_at) of those runs that exist."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        q = sa.select(t.runs.c.id, t.runs.c.state, t.runs.c.heartbeat_at).where(
            t.runs.c.id.in_(wanted))
        return {r.id: (r.state, r.heartbeat_at) for r in self.conn.execute(q)}

    def put(self, *claims: ClaimRecord) -> None:
        for c in claims:
            row = dataclasses.asdict(c)
            key = (t.claims.c.run_id == c.run_id) & (t.claims.c.task_id == c.task_id)
            if self.conn.execute(t.claims.update().where(key).values(**row)).rowcount == 0:
                self.conn.execute(t.claims.insert().values(**row))

    def delete(self, keys: Iterable[tuple[str, str]]) -> None:
        for run_id, task_id in keys:
            self.conn.execute(t.claims.delete().where(
                (t.claims.c.run_id == run_id) & (t.claims.c.task_id == task_id)))

    def put_quota(self, q: QuotaRecord) -> None:
        row = dataclasses.asdict(q)
        key = t.quotas.c.project == q.project
        if self.conn.execute(t.quotas.update().where(key).values(**row)).rowcount == 0:
            self.conn.execute(t.quotas.insert().values(**row))

    def delete_quota(self, project: str) -> bool:
        return bool(self.conn.execute(t.quotas.delete().where(
            t.quotas.c.project == project)).rowcount)

    def put_records(self, *records: Any) -> None:
        """Other records (an audit line) written in this same transaction."""
        for r in records:
            table, _ = self._tables[type(r)]
            self.conn.execute(table.insert().values(**dataclasses.asdict(r)))
