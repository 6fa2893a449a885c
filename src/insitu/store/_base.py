"""The Store interface: where runs, tasks, attempts and cache entries live.

Contract for every implementation:

- ``put(*records)`` upserts all records by primary key in one atomic transaction:
  either every record is durable when it returns, or none is and it raises
  :class:`~insitu.errors.StoreError`. The engine relies on this to write a state
  change before acting on it.
- Readers return new immutable records; they never see a half-applied ``put``.
- Lookups of a missing run raise :class:`~insitu.errors.NotFound` naming it;
  ``get_run`` also accepts a unique prefix of a run id.
- A store may be used from several processes at once (an engine writing, a CLI
  reading); one store object is used by one thread at a time.
- ``put_if(run_id, expect, *records)`` is ``put`` guarded by the run's row: it writes only
  if the run's columns still hold the ``expect``-ed values, atomically with that check, and
  returns whether it wrote. Two writers that read a run and both mean to change it (an
  engine starting it, a user cancelling it) use it so that neither overwrites the other.
- ``delete_cache`` of an absent key is not an error.
- ``select`` / ``delete`` work on every record type (runs, tasks, attempts, cache entries,
  metrics, params, logged artifacts, models, model versions, aliases).
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from insitu.store._records import AttemptRecord, CacheEntry, Record, RunRecord, TaskRecord
from insitu.store._schedules import TickRecord
from insitu.store._tenancy import AuditRecord, MemberRecord, TokenRecord, UserRecord

R = TypeVar("R")


@dataclass(frozen=True)
class TimeHistogram:
    counts: tuple[int, ...]     # cumulative, one per bucket bound
    count: int                  # all observations (the +Inf bucket)
    total: float                # sum of the observed seconds


@dataclass(frozen=True)
class Allocation:
    cpu: float
    memory: int                 # bytes
    gpu: float
    tasks: int


@dataclass(frozen=True)
class EngineHeartbeats:
    live: int
    stale: int
    newest: float | None        # the newest heartbeat time (epoch seconds)


class Store(abc.ABC):
    @abc.abstractmethod
    def put(self, *records: Record) -> None:
        """Upsert all ``records`` atomically."""

    @abc.abstractmethod
    def put_if(self, run_id: str, expect: Mapping[str, Any], *records: Record) -> bool:
        """Upsert ``records`` atomically if run ``run_id`` still has the ``expect``-ed
        column values (``None`` matches a null); return whether they were written."""

    @abc.abstractmethod
    def get_run(self, run_id: str) -> RunRecord:
        """The run with this id or unique id prefix; ``NotFound`` otherwise."""

    @abc.abstractmethod
    def list_runs(self, *, pipeline: str | None = None, state: str | None = None,
                  limit: int | None = None, project: str | None = None,
                  before: tuple[float, str] | None = None,
                  with_spec: bool = True, schedule: str | None = None) -> list[RunRecord]:
        """Runs, newest first (by ``created_at``, then id), optionally filtered
        (``schedule``: the runs that schedule's ticks made in ``project``); with
        ``before=(created_at, id)`` only those after that run in this order (a page cursor).
        ``with_spec=False`` leaves the (large) spec unread: the records' ``spec`` is ``{}``."""

    @abc.abstractmethod
    def list_audit(self, *, project: str | None = None, user: str | None = None,
                   action: str | None = None, since: float | None = None,
                   until: float | None = None, before: str | None = None,
                   limit: int = 100) -> list[AuditRecord]:
        """Audit records, newest first, filtered; ``before`` an audit id (a page cursor)."""

    @abc.abstractmethod
    def list_ticks(self, project: str, schedule: str, *, limit: int = 20,
                   state: str | None = None) -> list[TickRecord]:
        """A schedule's ticks, newest first (``state``: only "fired" or "skipped" ones)."""

    @abc.abstractmethod
    def count_runs(self) -> dict[tuple[str, str], int]:
        """How many runs each (project, state) holds."""

    @abc.abstractmethod
    def token_holder(self, token_id: str
                     ) -> tuple[TokenRecord, UserRecord | None, list[MemberRecord]] | None:
        """The token ``token_id`` with its user (None if that user is gone) and the user's
        memberships, read together (one query where the backend can); None if no such
        token."""

    # -- aggregates for monitoring: each one query, whatever the number of runs ----------
    @abc.abstractmethod
    def count_tasks(self) -> dict[tuple[str, str], int]:
        """How many tasks each (project, state) holds (a task's project is its run's)."""

    @abc.abstractmethod
    def queue_depth(self) -> dict[str, int]:
        """Per project: tasks that are ready (inputs available, ``ready_at`` set) but still
        pending, in runs that are pending or running."""

    @abc.abstractmethod
    def task_time_histogram(self, what: str, buckets: Sequence[float]
                            ) -> dict[tuple[str, ...], TimeHistogram]:
        """A histogram of task times, from the tasks' timestamps.

        ``what="run"``: ``ended_at - started_at`` of tasks that ran and ended (succeeded or
        failed), keyed by (project, state). ``what="queue_wait"``: ``started_at - ready_at``
        of tasks that started, keyed by (project,); a negative wait (clocks apart) counts as
        0. ``buckets`` are the upper bounds, ascending; ``counts[i]`` is cumulative (tasks
        with a time <= ``buckets[i]``)."""

    @abc.abstractmethod
    def allocated(self, *, alive_since: float) -> dict[tuple[str, str, str | None], Allocation]:
        """What running tasks hold, from the resources recorded at their launch, keyed by
        (project, node, requested GPU type or None). Only tasks of pending or running runs
        whose engine's heartbeat is at or after ``alive_since`` count (a run whose engine is
        gone holds nothing)."""

    @abc.abstractmethod
    def engine_heartbeats(self, *, alive_since: float) -> dict[str, EngineHeartbeats]:
        """Per project, the engines of pending or running runs (runs with an engine
        process): how many beat at or after ``alive_since`` (live) or not (stale), and the
        newest heartbeat time among them."""

    @abc.abstractmethod
    def list_tasks(self, run_id: str) -> list[TaskRecord]:
        """Tasks of a run in creation order (``[]`` for a run without tasks)."""

    @abc.abstractmethod
    def list_attempts(self, run_id: str, task_id: str | None = None) -> list[AttemptRecord]:
        """Attempts of a run (or of one task), ordered by task then number."""

    @abc.abstractmethod
    def get_cache(self, keys: Sequence[str]) -> dict[str, CacheEntry]:
        """Cache entries for those of ``keys`` that have one."""

    @abc.abstractmethod
    def delete_cache(self, keys: Iterable[str]) -> None:
        """Drop cache entries (absent keys are ignored)."""

    @abc.abstractmethod
    def delete_run(self, run_id: str) -> None:
        """Delete a run with everything recorded for it (``NotFound`` if absent;
        :class:`~insitu.errors.Conflict` if a registered model version came from it)."""

    @abc.abstractmethod
    def insert(self, *records: Record) -> None:
        """Create all ``records`` atomically; :class:`~insitu.errors.Conflict` (and nothing
        written) if any already exists."""

    @abc.abstractmethod
    def select(self, cls: type[R], **equals: Any) -> list[R]:
        """Records of type ``cls`` whose fields equal ``equals``, in primary-key order
        (``ValueError`` for a field ``cls`` does not have)."""

    @abc.abstractmethod
    def delete(self, cls: type[Any], **equals: Any) -> None:
        """Delete records of type ``cls`` whose fields equal ``equals`` (at least one)."""

    # -- leases: which engine drives a supervised run (see insitu.server._supervisor) -----
    @abc.abstractmethod
    def claim_run(self, run_id: str, owner: str, until: float, now: float) -> bool:
        """Give ``owner`` the lease of a supervised, pending or running run until ``until``,
        if nobody else holds a lease on it at ``now`` (or renew ``owner``'s own); one
        atomic compare-and-set. True if ``owner`` holds the lease now."""

    @abc.abstractmethod
    def release_run(self, run_id: str, owner: str) -> None:
        """Drop ``owner``'s lease on the run (nothing if another holds it)."""

    @abc.abstractmethod
    def claimable_runs(self, now: float, limit: int) -> list[str]:
        """Ids of supervised pending or running runs nobody holds a lease on at ``now``,
        oldest first."""

    @abc.abstractmethod
    def leases(self, now: float) -> dict[str, str]:
        """The leases held at ``now``: run id -> owner."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
