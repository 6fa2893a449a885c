"""Reads and writes of quotas and their claims inside one exclusive transaction
(:meth:`insitu.store.SQLStore.exclusive`): what every engine's quota admission sees and
changes atomically."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from insitu.store import _tables as t
from insitu.store._tenancy import ClaimRecord, QuotaRecord


def _rec(cls: type[Any], row: Any) -> Any:
    m = row._mapping
    return cls(**{f.name: m[f.name] for f in dataclasses.fields(cls)})


class ClaimsTx:
    """The quotas and claims tables, in an open transaction that holds the claims lock."""

    def __init__(self, conn: Connection, tables: dict[type, tuple[sa.Table, Any]]) -> None:
        self.conn = conn
        self._tables = tables  # record class -> (table, primary key)

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
