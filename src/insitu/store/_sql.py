"""The SQLAlchemy store: SQLite (WAL) by default, PostgreSQL for a shared server."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from insitu.errors import Conflict, NotFound, StoreError
from insitu.store import _integrity
from insitu.store import _tables as t
from insitu.store._base import Allocation, EngineHeartbeats, Store, TimeHistogram
from insitu.store._endpoints import EndpointRecord, EndpointStatusRecord
from insitu.store._notebooks import NotebookRecord
from insitu.store._records import (
    AliasRecord,
    AttemptRecord,
    CacheEntry,
    DataReadRecord,
    DatasetRecord,
    LoggedArtifact,
    MetricRecord,
    ModelRecord,
    ModelVersionRecord,
    ParamRecord,
    Record,
    RunRecord,
    ShardRecord,
    TaskRecord,
    TrialRecord,
)
from insitu.store._schedules import ScheduleRecord, TickRecord
from insitu.store._tenancy import (
    AuditRecord,
    ClaimRecord,
    LoginRecord,
    MemberRecord,
    PackageRecord,
    ProjectRecord,
    QuotaRecord,
    SessionRecord,
    TokenRecord,
    UserRecord,
)

HEAD = "0016"  # the newest migration; keep in step with migrations/versions
_KNOWN = {"0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008", "0009", "0010", "0011",
          "0012", "0013", "0014", "0015", "0016"}

_TABLE_OF: dict[type, tuple[sa.Table, tuple[str, ...]]] = {
    RunRecord: (t.runs, ("id",)),
    TaskRecord: (t.tasks, ("run_id", "id")),
    AttemptRecord: (t.attempts, ("run_id", "task_id", "number")),
    CacheEntry: (t.cache, ("key",)),
    MetricRecord: (t.metrics, ("run_id", "task_id", "attempt", "name", "step")),
    ParamRecord: (t.params, ("run_id", "task_id", "name")),
    LoggedArtifact: (t.logged_artifacts, ("run_id", "task_id", "attempt", "name")),
    ModelRecord: (t.models, ("project", "name")),
    ModelVersionRecord: (t.model_versions, ("project", "name", "version")),
    AliasRecord: (t.aliases, ("project", "name", "alias")),
    TrialRecord: (t.trials, ("run_id", "step_id", "number")),
    DatasetRecord: (t.datasets, ("name",)),
    ShardRecord: (t.shards, ("dataset", "shard")),
    DataReadRecord: (t.data_reads, ("run_id", "task_id", "attempt", "seq")),
    ProjectRecord: (t.projects, ("name",)),
    UserRecord: (t.users, ("name",)),
    MemberRecord: (t.members, ("project", "user")),
    TokenRecord: (t.tokens, ("id",)),
    AuditRecord: (t.audit, ("id",)),
    SessionRecord: (t.sessions, ("id",)),
    LoginRecord: (t.logins, ("id",)),
    QuotaRecord: (t.quotas, ("project",)),
    ClaimRecord: (t.claims, ("run_id", "task_id")),
    ScheduleRecord: (t.schedules, ("project", "name")),
    TickRecord: (t.ticks, ("project", "schedule", "at")),
    PackageRecord: (t.packages, ("digest",)),
    EndpointRecord: (t.endpoints, ("project", "name")),
    EndpointStatusRecord: (t.endpoint_status, ("project", "name")),
    NotebookRecord: (t.notebooks, ("project", "name")),
}


class SQLStore(Store):
    """A :class:`Store` over SQLAlchemy. The schema is created or upgraded on open."""

    def __init__(self, url: str, *, pool_size: int | None = None) -> None:
        self.url = url
        self._engine = _make_engine(url, pool_size)
        self._dialect = self._engine.dialect.name
        # reads: on PostgreSQL, in autocommit (one round trip per query, not three: no
        # BEGIN before it and no ROLLBACK after it); the same pool of connections
        self._reader = (self._engine.execution_options(isolation_level="AUTOCOMMIT")
                        if self._dialect == "postgresql" else self._engine)
        self._upserts: dict[str, Any] = {}
        self._token_holder_q: Any = None
        self._ensure_schema()

    # -- schema ---------------------------------------------------------------
    def _describe(self) -> str:
        u = sa.engine.make_url(self.url)
        return u.database if u.drivername.startswith("sqlite") and u.database else \
            u.render_as_string(hide_password=True)

    def _ensure_schema(self) -> None:
        where = self._describe()
        try:
            with self._engine.connect() as conn:
                if self._dialect == "sqlite" and where != ":memory:":
                    _integrity.quick_check(conn, where)  # a damaged file is refused
                if _current_version(conn) == HEAD:  # the usual case: no lock needed
                    return
            with self._schema_lock():  # one process creates or upgrades; others wait
                with self._engine.connect() as conn:
                    version = _current_version(conn)
                    if version == HEAD:
                        return
                    if version is not None and version not in _KNOWN:
                        raise StoreError(
                            f"the database {where} was written by a newer insitu (schema "
                            f"{version}; this insitu knows up to {HEAD})",
                            hint="upgrade insitu: pip install -U insitu")
                    if version is None:
                        tables = sa.inspect(conn).get_table_names()
                        if tables:
                            raise StoreError(
                                f"{where} is not an insitu database (it holds tables "
                                f"{', '.join(sorted(tables)[:5])})",
                                hint="set INSITU_HOME (or INSITU_DB_URL) to another location, "
                                     "or move that file away")
                self._upgrade()
        except sa.exc.DatabaseError as e:
            raise _db_error(e, where) from None

    @contextlib.contextmanager
    def _schema_lock(self) -> Iterator[None]:
        """Serialise schema creation between processes (a file lock beside an SQLite file,
        an advisory lock on PostgreSQL)."""
        u = sa.engine.make_url(self.url)
        if u.drivername.startswith("sqlite") and u.database and u.database != ":memory:":
            import fcntl

            with open(f"{u.database}.lock", "a") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(f, fcntl.LOCK_UN)
        elif self._dialect == "postgresql":
            with self._engine.connect() as conn:
                conn.execute(sa.text("SELECT pg_advisory_lock(7249001)"))
                try:
                    yield
                finally:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(7249001)"))
        else:
            yield

    def _upgrade(self) -> None:
        from alembic import command
        from alembic.config import Config

        ini = Path(__file__).parent / "migrations" / "alembic.ini"
        cfg = Config(str(ini))
        cfg.set_main_option("script_location", str(ini.parent))
        with self._engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    # -- writes ---------------------------------------------------------------
    def put(self, *records: Record) -> None:
        if not records:
            return
        groups: dict[type, list[dict[str, Any]]] = {}
        for r in records:
            groups.setdefault(type(r), []).append(_to_row(r))
        try:
            with self._engine.begin() as conn:
                for cls, rows in groups.items():
                    table, pk = _TABLE_OF[cls]
                    self._upsert(conn, table, pk, rows)
        except sa.exc.DatabaseError as e:
            raise _db_error(e, self._describe()) from None

    def put_if(self, run_id: str, expect: Mapping[str, Any], *records: Record) -> bool:
        r = t.runs.c
        cond = [r.id == run_id]
        for k, v in expect.items():
            if k not in r:
                raise ValueError(f"runs have no column {k!r}")
            cond.append(r[k].is_(None) if v is None else r[k] == v)
        groups: dict[type, list[dict[str, Any]]] = {}
        for rec in records:
            groups.setdefault(type(rec), []).append(_to_row(rec))
        try:
            with self._engine.begin() as conn:
                # a write that changes nothing: it checks the row and holds it to the commit
                hit = conn.execute(t.runs.update().where(*cond).values(id=r.id)).rowcount
                if hit != 1:
                    return False
                for cls, rows in groups.items():
                    table, pk = _TABLE_OF[cls]
                    self._upsert(conn, table, pk, rows)
                return True
        except sa.exc.DatabaseError as e:
            raise _db_error(e, self._describe()) from None

    def insert(self, *records: Record) -> None:
        try:
            with self._engine.begin() as conn:
                for r in records:
                    table, _ = _TABLE_OF[type(r)]
                    conn.execute(table.insert(), [_to_row(r)])
        except sa.exc.IntegrityError:
            raise Conflict(f"{type(records[0]).__name__} already exists",
                           hint="read it back and retry") from None
        except sa.exc.DatabaseError as e:
            raise _db_error(e, self._describe()) from None

    def _upsert(self, conn: Connection, table: sa.Table, pk: tuple[str, ...],
                rows: list[dict[str, Any]]) -> None:
        if self._dialect in ("sqlite", "postgresql"):
            stmt = self._upserts.get(table.name)
            if stmt is None:  # built once: constructing it costs more than running it
                ins: Any
                if self._dialect == "sqlite":
                    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

                    ins = sqlite_insert(table)
                else:
                    from sqlalchemy.dialects.postgresql import insert as pg_insert

                    ins = pg_insert(table)
                # only the record's fields: columns it lacks (a run's lease) keep their value
                cols = [c for c in rows[0] if c not in pk]
                stmt = ins.on_conflict_do_update(index_elements=list(pk),
                                                 set_={c: ins.excluded[c] for c in cols})
                self._upserts[table.name] = stmt
            conn.execute(stmt, rows)
            return
        for row in rows:  # portable fallback
            cond = sa.and_(*(table.c[k] == row[k] for k in pk))
            conn.execute(table.delete().where(cond))
        conn.execute(table.insert(), rows)

    def delete_cache(self, keys: Iterable[str]) -> None:
        ks = list(keys)
        if ks:
            with self._engine.begin() as conn:
                conn.execute(t.cache.delete().where(t.cache.c.key.in_(ks)))

    def delete_run(self, run_id: str) -> None:
        run = self.get_run(run_id)
        with self._engine.begin() as conn:
            used = list(conn.execute(sa.select(t.model_versions.c.name, t.model_versions.c.version)
                                     .where(t.model_versions.c.run_id == run.id)))
            if used:
                names = ", ".join(f"{n} v{v}" for n, v in used)
                raise Conflict(
                    f"run {run.id} produced registered model version(s) {names}; deleting it "
                    "would break their lineage",
                    hint="delete those versions first (insitu models delete NAME VERSION)")
            for table in (t.attempts, t.tasks, t.metrics, t.params, t.logged_artifacts,
                          t.trials, t.data_reads):
                conn.execute(table.delete().where(table.c.run_id == run.id))
            conn.execute(t.runs.delete().where(t.runs.c.id == run.id))

    def select(self, cls: type[Any], **equals: Any) -> list[Any]:
        table, pk = _TABLE_OF[cls]
        q = sa.select(table)
        for k, v in equals.items():
            if k not in table.c:
                raise ValueError(f"{cls.__name__} has no field {k!r}")
            q = q.where(table.c[k] == v)
        q = q.order_by(*(table.c[k] for k in pk))
        return _from_rows(cls, self._rows(q))

    def delete(self, cls: type[Any], **equals: Any) -> None:
        table, _ = _TABLE_OF[cls]
        if not equals:
            raise ValueError("delete needs at least one field to match")
        q = table.delete()
        for k, v in equals.items():
            if k not in table.c:
                raise ValueError(f"{cls.__name__} has no field {k!r}")
            q = q.where(table.c[k] == v)
        with self._engine.begin() as conn:
            conn.execute(q)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[Any]:
        """One transaction that no other process's ``exclusive`` transaction overlaps (an
        advisory transaction lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite): reads and
        writes of quotas' claims inside it are atomic across engines. Yields a
        :class:`~insitu.store._claims.ClaimsTx`."""
        from insitu.store._claims import ClaimsTx

        try:
            with self._engine.connect() as conn:
                if self._dialect == "sqlite":
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                elif self._dialect == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(7249011)"))
                try:
                    yield ClaimsTx(conn, _TABLE_OF, self._upsert, _to_row)
                except BaseException:
                    conn.rollback()
                    raise
                conn.commit()
        except sa.exc.DatabaseError as e:
            raise _db_error(e, self._describe()) from None

    # -- reads ----------------------------------------------------------------
    def _rows(self, stmt: Any, params: dict[str, Any] | None = None) -> list[Any]:
        """The rows of one read (a statement of its own; no transaction is left open). A
        connection the database closed meanwhile (a restart) is replaced and the read tried
        once more: reads are safe to repeat."""
        for again in (True, False):
            try:
                with self._reader.connect() as conn:
                    return list(conn.execute(stmt, params))
            except sa.exc.DBAPIError as e:
                if again and e.connection_invalidated:
                    continue
                if isinstance(e, sa.exc.DatabaseError):
                    raise _db_error(e, self._describe()) from None
                raise
        raise AssertionError("unreachable")

    def get_run(self, run_id: str) -> RunRecord:
        rows = self._rows(sa.select(*_RUN_COLUMNS).where(t.runs.c.id == run_id))
        if not rows and run_id and "%" not in run_id and "_" not in run_id:
            rows = self._rows(sa.select(*_RUN_COLUMNS).where(t.runs.c.id.like(f"{run_id}%"))
                              .order_by(t.runs.c.created_at.desc()).limit(11))
            if len(rows) > 1:
                ids = ", ".join(f"{r.id} ({r.pipeline})" for r in rows[:10])
                raise NotFound(f"run id prefix {run_id!r} is ambiguous: it starts "
                               f"{'more than 10' if len(rows) > 10 else len(rows)} runs: {ids}",
                               hint="give more characters of the run id")
        if not rows:
            raise NotFound(f"no run {run_id!r} in {self._describe()}",
                           hint="list runs with `insitu runs`")
        return _from_row(RunRecord, rows[0])

    def list_runs(self, *, pipeline: str | None = None, state: str | None = None,
                  limit: int | None = None, project: str | None = None,
                  before: tuple[float, str] | None = None,
                  with_spec: bool = True, schedule: str | None = None) -> list[RunRecord]:
        given = {"project": project, "pipeline": pipeline or None, "state": state or None,
                 "limit": limit or None, "schedule": schedule or None}
        if schedule and project is None:
            raise ValueError("list_runs: a schedule is named within a project")
        params: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        if before is not None:
            params["before_at"], params["before_id"] = before
        q = _run_list_query(with_spec, tuple(sorted(params)))
        if with_spec:
            return _from_rows(RunRecord, self._rows(q, params))
        return _from_rows(RunRecord, self._rows(q, params), spec={})

    def list_audit(self, *, project: str | None = None, user: str | None = None,
                   action: str | None = None, since: float | None = None,
                   until: float | None = None, before: str | None = None,
                   limit: int = 100) -> list[AuditRecord]:
        q = sa.select(t.audit).order_by(t.audit.c.id.desc()).limit(limit)
        for col, v in (("project", project), ("user", user), ("action", action)):
            if v is not None:
                q = q.where(t.audit.c[col] == v)
        if since is not None:
            q = q.where(t.audit.c.at >= since)
        if until is not None:
            q = q.where(t.audit.c.at < until)
        if before is not None:
            q = q.where(t.audit.c.id < before)
        return _from_rows(AuditRecord, self._rows(q))

    def list_ticks(self, project: str, schedule: str, *, limit: int = 20,
                   state: str | None = None) -> list[TickRecord]:
        q = (sa.select(t.ticks).where(t.ticks.c.project == project,
                                      t.ticks.c.schedule == schedule)
             .order_by(t.ticks.c.at.desc()).limit(limit))
        if state is not None:
            q = q.where(t.ticks.c.state == state)
        return _from_rows(TickRecord, self._rows(q))

    def count_runs(self) -> dict[tuple[str, str], int]:
        q = sa.select(t.runs.c.project, t.runs.c.state, sa.func.count()).group_by(
            t.runs.c.project, t.runs.c.state)
        return {(p, st): int(n) for p, st, n in self._rows(q)}

    def token_holder(self, token_id: str
                     ) -> tuple[TokenRecord, UserRecord | None, list[MemberRecord]] | None:
        tk, us, mb = t.tokens, t.users, t.members
        q = self._token_holder_q
        if q is None:  # one joined query: a row per membership (or one without any)
            q = self._token_holder_q = (
                sa.select(*tk.c, us.c.name.label("u_name"),
                          us.c.created_at.label("u_created_at"), us.c.admin.label("u_admin"),
                          us.c.service.label("u_service"), us.c.email.label("u_email"),
                          mb.c.project.label("m_project"), mb.c.role.label("m_role"))
                .select_from(tk.outerjoin(us, us.c.name == tk.c.user)
                             .outerjoin(mb, mb.c.user == us.c.name))
                .where(tk.c.id == sa.bindparam("tid"))
                .order_by(mb.c.project))
        rows = self._rows(q, {"tid": token_id})
        if not rows:
            return None
        token = _from_row(TokenRecord, rows[0])
        r = rows[0]
        user = None if r.u_name is None else UserRecord(
            name=r.u_name, created_at=r.u_created_at, admin=r.u_admin, service=r.u_service,
            email=r.u_email)
        members = [MemberRecord(project=r.m_project, user=token.user, role=r.m_role)
                   for r in rows if r.m_project is not None]
        return token, user, members

    def count_tasks(self) -> dict[tuple[str, str], int]:
        q = (sa.select(t.runs.c.project, t.tasks.c.state, sa.func.count())
             .select_from(t.tasks.join(t.runs, t.runs.c.id == t.tasks.c.run_id))
             .group_by(t.runs.c.project, t.tasks.c.state))
        return {(p, st): int(n) for p, st, n in self._rows(q)}

    def queue_depth(self) -> dict[str, int]:
        q = (sa.select(t.runs.c.project, sa.func.count())
             .select_from(t.tasks.join(t.runs, t.runs.c.id == t.tasks.c.run_id))
             .where(t.tasks.c.state == "pending", t.tasks.c.ready_at.is_not(None),
                    t.runs.c.state.in_(("pending", "running")))
             .group_by(t.runs.c.project))
        return {p: int(n) for p, n in self._rows(q)}

    def task_time_histogram(self, what: str, buckets: Sequence[float]
                            ) -> dict[tuple[str, ...], TimeHistogram]:
        tk = t.tasks
        if what == "run":
            seconds: Any = tk.c.ended_at - tk.c.started_at
            keys: list[Any] = [t.runs.c.project, tk.c.state]
            cond = [tk.c.state.in_(("succeeded", "failed")), tk.c.started_at.is_not(None),
                    tk.c.ended_at.is_not(None)]
        elif what == "queue_wait":
            seconds = tk.c.started_at - tk.c.ready_at
            keys = [t.runs.c.project]
            cond = [tk.c.started_at.is_not(None), tk.c.ready_at.is_not(None)]
        else:
            raise ValueError(f"unknown task time {what!r} (run or queue_wait)")
        seconds = sa.case((seconds < 0, 0.0), else_=seconds)
        bounds = [float(b) for b in buckets]
        cols = [sa.func.sum(sa.case((seconds <= b, 1), else_=0)) for b in bounds]
        q = (sa.select(*keys, sa.func.count(), sa.func.sum(seconds), *cols)
             .select_from(tk.join(t.runs, t.runs.c.id == tk.c.run_id))
             .where(*cond).group_by(*keys))
        out = {}
        n = len(keys)
        for row in self._rows(q):
            out[tuple(row[:n])] = TimeHistogram(
                counts=tuple(int(c or 0) for c in row[n + 2:]), count=int(row[n]),
                total=float(row[n + 1] or 0.0))
        return out

    def allocated(self, *, alive_since: float
                  ) -> dict[tuple[str, str, str | None], Allocation]:
        res = t.tasks.c.resources
        gpu_type = res["gpu_type"].as_string()
        q = (sa.select(t.runs.c.project, t.tasks.c.node, gpu_type,
                       sa.func.sum(res["cpu"].as_float()), sa.func.sum(res["memory"].as_float()),
                       sa.func.sum(res["gpu"].as_float()), sa.func.count())
             .select_from(t.tasks.join(t.runs, t.runs.c.id == t.tasks.c.run_id))
             .where(t.tasks.c.state == "running", t.tasks.c.node.is_not(None),
                    t.tasks.c.resources.is_not(None),
                    t.runs.c.state.in_(("pending", "running")),
                    t.runs.c.heartbeat_at >= alive_since)
             .group_by(t.runs.c.project, t.tasks.c.node, gpu_type))
        return {(p, node, gt): Allocation(cpu=float(c or 0), memory=int(m or 0),
                                          gpu=float(g or 0), tasks=int(n))
                for p, node, gt, c, m, g, n in self._rows(q)}

    def engine_heartbeats(self, *, alive_since: float) -> dict[str, EngineHeartbeats]:
        r = t.runs.c
        live = r.heartbeat_at >= alive_since
        q = (sa.select(r.project, sa.func.sum(sa.case((live, 1), else_=0)),
                       sa.func.sum(sa.case((live, 0), else_=1)), sa.func.max(r.heartbeat_at))
             .where(r.state.in_(("pending", "running")), r.engine_pid.is_not(None))
             .group_by(r.project))
        return {p: EngineHeartbeats(live=int(a or 0), stale=int(b or 0),
                                    newest=None if h is None else float(h))
                for p, a, b, h in self._rows(q)}

    def list_tasks(self, run_id: str) -> list[TaskRecord]:
        q = sa.select(t.tasks).where(t.tasks.c.run_id == run_id).order_by(t.tasks.c.seq)
        return _from_rows(TaskRecord, self._rows(q))

    def list_attempts(self, run_id: str, task_id: str | None = None) -> list[AttemptRecord]:
        q = sa.select(t.attempts).where(t.attempts.c.run_id == run_id)
        if task_id is not None:
            q = q.where(t.attempts.c.task_id == task_id)
        q = q.order_by(t.attempts.c.task_id, t.attempts.c.number)
        return _from_rows(AttemptRecord, self._rows(q))

    def get_cache(self, keys: Sequence[str]) -> dict[str, CacheEntry]:
        out: dict[str, CacheEntry] = {}
        ks = list(keys)
        for i in range(0, len(ks), 500):
            q = sa.select(t.cache).where(t.cache.c.key.in_(ks[i:i + 500]))
            for r in self._rows(q):
                out[r.key] = _from_row(CacheEntry, r)
        return out

    # -- leases of supervised runs ----------------------------------------------
    def claim_run(self, run_id: str, owner: str, until: float, now: float) -> bool:
        r = t.runs.c
        q = (t.runs.update()
             .where(r.id == run_id, r.supervised.is_(True),
                    r.state.in_(("pending", "running")),
                    sa.or_(r.lease_owner.is_(None), r.lease_owner == owner,
                           r.lease_until.is_(None), r.lease_until < now))
             .values(lease_owner=owner, lease_until=until))
        try:
            with self._engine.begin() as conn:
                return conn.execute(q).rowcount == 1
        except sa.exc.DatabaseError as e:
            raise _db_error(e, self._describe()) from None

    def release_run(self, run_id: str, owner: str) -> None:
        r = t.runs.c
        with self._engine.begin() as conn:
            conn.execute(t.runs.update().where(r.id == run_id, r.lease_owner == owner)
                         .values(lease_owner=None, lease_until=None))

    def claimable_runs(self, now: float, limit: int) -> list[str]:
        r = t.runs.c
        q = (sa.select(r.id).where(r.supervised.is_(True), r.state.in_(("pending", "running")),
                                   sa.or_(r.lease_until.is_(None), r.lease_until < now))
             .order_by(r.created_at, r.id).limit(limit))
        return [row.id for row in self._rows(q)]

    def leases(self, now: float) -> dict[str, str]:
        r = t.runs.c
        q = sa.select(r.id, r.lease_owner).where(r.supervised.is_(True),
                                                r.lease_until >= now)
        return {row.id: row.lease_owner for row in self._rows(q)}

    def close(self) -> None:
        self._engine.dispose()


_RUN_FIELDS = {f.name for f in dataclasses.fields(RunRecord)}
# the columns of a run's record (not the lease's, which only ``claim_run`` writes)
_RUN_COLUMNS = [c for c in t.runs.c if c.name in _RUN_FIELDS]
_RUN_COLUMNS_NO_SPEC = [c for c in _RUN_COLUMNS if c.name != "spec"]


@functools.lru_cache(maxsize=64)
def _run_list_query(with_spec: bool, filters: tuple[str, ...]) -> Any:
    """The statement of ``list_runs`` for that set of filters (each a bound parameter of its
    name), built once: building it costs more than running it."""
    r = t.runs.c
    q = sa.select(*(_RUN_COLUMNS if with_spec else _RUN_COLUMNS_NO_SPEC)).order_by(
        r.created_at.desc(), r.id.desc())
    for name in ("project", "pipeline", "state"):
        if name in filters:
            q = q.where(r[name] == sa.bindparam(name))
    if "schedule" in filters:
        # the schedule's ticks name its runs: they are read on the ticks' key (project,
        # schedule, at) and the project's runs walked newest first on the index on
        # (project, created_at, id) until a page is full; labels (JSON) are never read
        k = t.ticks.c
        q = q.where(r.id.in_(sa.select(k.run_id).where(
            k.project == sa.bindparam("project"), k.schedule == sa.bindparam("schedule"),
            k.run_id.is_not(None))))
    if "before_at" in filters:  # keyset pagination: strictly after (created_at, id) in order
        # a row-value comparison, which both databases answer from the index on
        # (project, created_at, id) by seeking, however deep the page is
        q = q.where(sa.tuple_(r.created_at, r.id)
                    < sa.tuple_(sa.bindparam("before_at"), sa.bindparam("before_id")))
    if "limit" in filters:
        q = q.limit(sa.bindparam("limit", type_=sa.Integer))
    return q


def _to_row(r: Record) -> dict[str, Any]:
    return {f.name: getattr(r, f.name) for f in dataclasses.fields(r)}


def _from_row(cls: type[Any], row: Any, **given: Any) -> Any:
    names = row._fields
    if _same_names(cls, names, tuple(given)):  # the usual case: one column per field
        return _make(cls, dict(zip(names, row, strict=True), **given))
    m = row._mapping
    return cls(**{f.name: m[f.name] for f in _fields(cls) if f.name not in given}, **given)


def _from_rows(cls: type[Any], rows: list[Any], **given: Any) -> list[Any]:
    """:func:`_from_row` of each of ``rows`` (all of one query)."""
    if not rows:
        return []
    names = rows[0]._fields
    if not _same_names(cls, names, tuple(given)):
        return [_from_row(cls, r, **given) for r in rows]
    return [_make(cls, dict(zip(names, r, strict=True), **given)) for r in rows]


def _make(cls: type[Any], values: dict[str, Any]) -> Any:
    """A record from a value for each of its fields, as its ``__init__`` would make it (the
    records are frozen dataclasses without ``__post_init__``) at a fraction of the cost: a
    page of runs is mostly this."""
    rec = object.__new__(cls)
    rec.__dict__.update(values)
    return rec


_SAME: dict[tuple[type[Any], tuple[str, ...], tuple[str, ...]], bool] = {}


def _same_names(cls: type[Any], columns: tuple[str, ...], given: tuple[str, ...]) -> bool:
    key = (cls, columns, given)
    same = _SAME.get(key)
    if same is None:
        names = [f.name for f in _fields(cls)]
        same = _SAME[key] = sorted(columns + given) == sorted(names)
    return same


_FIELDS: dict[type[Any], tuple[dataclasses.Field[Any], ...]] = {}


def _fields(cls: type[Any]) -> tuple[dataclasses.Field[Any], ...]:
    found = _FIELDS.get(cls)
    if found is None:
        found = _FIELDS[cls] = dataclasses.fields(cls)
    return found


def _current_version(conn: Connection) -> str | None:
    if not sa.inspect(conn).has_table(t.VERSION_TABLE):
        return None
    return conn.execute(sa.text(f"SELECT version_num FROM {t.VERSION_TABLE}")).scalar()


_URL_HINT = ("give sqlite:///PATH (a file) or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB "
             "(pip install \"insitu[server]\" for PostgreSQL)")


def _is_sqlite(p: Path) -> bool:
    """Does ``p`` start like an SQLite database? Asked through SQLite itself: opening and
    closing the file with a plain ``open()`` would release every POSIX lock this process's
    SQLite connections hold on it (a close drops all of a process's locks on the file), and
    another process could then checkpoint and remove the WAL under them."""
    import sqlite3
    from urllib.parse import quote

    try:
        conn = sqlite3.connect(f"file:{quote(str(p))}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error:
        return True  # cannot open it here: let the real connection report why
    try:
        conn.execute("PRAGMA schema_version").fetchone()
        return True
    except sqlite3.DatabaseError as e:
        return "not a database" not in str(e) and "encrypted" not in str(e)
    finally:
        conn.close()


def _make_engine(url: str, pool_size: int | None = None) -> Engine:
    """``pool_size``: connections kept open for that many threads using the store at once
    (and as many again opened beyond it when needed), so a busy server reuses connections
    rather than opening one per query (default: SQLAlchemy's 5)."""
    try:
        u = sa.engine.make_url(url)
        u.get_dialect()
    except sa.exc.ArgumentError:
        raise StoreError(f"{url!r} is not a database URL", hint=_URL_HINT) from None
    except (sa.exc.NoSuchModuleError, ImportError) as e:
        shown = sa.engine.make_url(url).render_as_string(hide_password=True)
        raise StoreError(f"insitu cannot use the database {shown} ({e})",
                         hint=_URL_HINT) from None
    if u.drivername.startswith("sqlite"):
        path = u.database
        if path and path != ":memory:" and not path.startswith("file:"):  # not a URI name
            p = Path(path)
            _integrity.check_location(p)
            if p.exists() and p.stat().st_size > 0 and not _is_sqlite(p):
                raise StoreError(
                    f"{p} is not an SQLite database (corrupted, or a file of another "
                    "program)",
                    hint=f"move it aside (mv {p} {p}.bad) and insitu will create a fresh "
                         "one, or set INSITU_HOME to another directory")
            p.parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30},
                                  json_deserializer=_json_loads,
                                  **(_pool(pool_size) if path and path != ":memory:" else {}))

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    engine = sa.create_engine(url, json_deserializer=_json_loads, **_pool(pool_size))
    _ping_when_idle(engine)
    return engine


_IDLE_PING_S = 1.0


def _ping_when_idle(engine: Engine) -> None:
    """A pooled connection that sat idle for a while is checked (``SELECT 1``) before use,
    and replaced if the database closed it (a restart, an idle timeout): SQLAlchemy's
    ``pool_pre_ping``, but only after ``_IDLE_PING_S`` of idleness, so a busy server does
    not pay a round trip per query. A connection lost while in use makes that statement
    fail; reads are then tried once more (``SQLStore._rows``)."""

    @sa.event.listens_for(engine, "checkin")
    def _idle_from(dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _ping(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < _IDLE_PING_S:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
            dbapi_conn.rollback()  # leave no transaction open (the ping may have begun one)
        except engine.dialect.loaded_dbapi.Error as e:
            if not engine.dialect.is_disconnect(e, dbapi_conn, None):
                raise
            alive = False
        if not alive:  # the pool discards it and checks out another
            raise sa.exc.DisconnectionError("the database closed this idle connection")


def _pool(size: int | None) -> dict[str, int]:
    return {} if size is None else {"pool_size": size, "max_overflow": size}


def _json_loads(text: str | bytes) -> Any:
    """JSON columns decoded with orjson where installed (several times faster), else, or for
    what orjson refuses (NaN, as Python's encoder writes it), the standard decoder."""
    if _orjson is not None:
        try:
            return _orjson.loads(text)
        except ValueError:
            pass
    return json.loads(text)


try:
    import orjson as _orjson
except ImportError:  # it comes with insitu[server]; the standard decoder does without
    _orjson = None  # type: ignore[assignment]


def _db_error(e: sa.exc.DatabaseError, where: str) -> StoreError:
    text = str(getattr(e, "orig", e))
    if isinstance(e, sa.exc.OperationalError) and "connection" in text and \
            not where.startswith("/"):  # a database server, not a file
        return StoreError(f"cannot connect to the database {where}: "
                          f"{' '.join(text.split())}",
                          hint="check that the database server runs at that host and port and "
                               "accepts connections from here, and the URL's user, password "
                               "and database name")
    if "no such table" in text or "does not exist" in text:
        return StoreError(f"{where} is missing insitu's tables ({text})",
                          hint="point INSITU_HOME or INSITU_DB_URL at an insitu database")
    return _integrity.describe(text, where)


def open_store(url: str | None = None, *, pool_size: int | None = None) -> SQLStore:
    """Open the store at ``url`` (default: from the environment, see ``insitu._config``);
    ``pool_size``: see :func:`_make_engine`."""
    if url is None:
        from insitu._config import load_config

        url = load_config().db_url
    return SQLStore(url, pool_size=pool_size)


__all__ = ["HEAD", "SQLStore", "open_store"]

