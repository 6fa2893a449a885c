"""Records: immutable values the store reads and writes.

Every record is a frozen, keyword-only dataclass. The store hands out new
objects; later writes never change a record already returned. Change one with
``dataclasses.replace`` and ``Store.put`` it back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from insitu.store._tenancy import (
    AuditRecord,
    MemberRecord,
    ProjectRecord,
    TokenRecord,
    UserRecord,
)

# Run states
RUN_PENDING = "pending"
RUN_RUNNING = "running"
RUN_SUCCEEDED = "succeeded"
RUN_FAILED = "failed"
RUN_CANCELLED = "cancelled"
RUN_TERMINAL = frozenset({RUN_SUCCEEDED, RUN_FAILED, RUN_CANCELLED})

# Task states
TASK_PENDING = "pending"      # waiting for inputs or resources (or for its retry backoff)
TASK_RUNNING = "running"      # an attempt is running (or, for a map, its items are)
TASK_SUCCEEDED = "succeeded"
TASK_CACHED = "cached"        # succeeded from the cache, without running
TASK_FAILED = "failed"
TASK_SKIPPED = "skipped"      # its condition was false, or an upstream step was skipped
TASK_CANCELLED = "cancelled"
TASK_PRUNED = "pruned"        # a tuning trial stopped early by the tuner; not a failure
TASK_DONE = frozenset({TASK_SUCCEEDED, TASK_CACHED})
TASK_TERMINAL = frozenset({TASK_SUCCEEDED, TASK_CACHED, TASK_FAILED, TASK_SKIPPED,
                           TASK_CANCELLED, TASK_PRUNED})

# Attempt states
ATT_RUNNING = "running"
ATT_SUCCEEDED = "succeeded"
ATT_FAILED = "failed"
ATT_LOST = "lost"             # its worker or the engine vanished; does not use up a retry
ATT_CANCELLED = "cancelled"
ATT_PRUNED = "pruned"
ATT_TERMINAL = frozenset({ATT_SUCCEEDED, ATT_FAILED, ATT_LOST, ATT_CANCELLED, ATT_PRUNED})


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    id: str
    pipeline: str
    state: str
    spec: dict[str, Any]
    params: dict[str, Any]
    created_at: float
    started_at: float | None = None
    ended_at: float | None = None
    no_cache: bool = False
    backend: str = "local"
    engine_pid: int | None = None
    engine_host: str | None = None
    heartbeat_at: float | None = None
    cancel_requested: bool = False
    error: dict[str, Any] | None = None
    labels: dict[str, Any] = field(default_factory=dict)
    project: str = "default"     # the project it belongs to (see insitu.server)


@dataclass(frozen=True, kw_only=True)
class TaskRecord:
    run_id: str
    id: str                     # step id, or "step[i]" for an item of a map
    step_id: str
    state: str
    seq: int = 0                # creation order within the run
    map_index: int | None = None
    map_size: int | None = None  # set on the parent task of a map once expanded
    attempts: int = 0
    cache_key: str | None = None
    output: dict[str, Any] | None = None   # an output ref, see insitu.artifacts
    error: dict[str, Any] | None = None
    resources: dict[str, Any] | None = None
    node: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    not_before: float | None = None  # retry backoff: not launched before this time
    ready_at: float | None = None    # when its inputs were all available
    pending_reason: str | None = None  # why it waits although ready (from the scheduler)


@dataclass(frozen=True, kw_only=True)
class AttemptRecord:
    run_id: str
    task_id: str
    number: int                 # 1, 2, ...
    state: str
    node: str | None = None
    pid: int | None = None
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    peak_memory: int | None = None   # bytes (max RSS)
    cpu_time: float | None = None    # seconds, user + system
    error: dict[str, Any] | None = None
    placement: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class CacheEntry:
    key: str
    step: str
    output: dict[str, Any]
    run_id: str
    task_id: str
    created_at: float




# -- tracking: what steps log while they run --------------------------------------------

@dataclass(frozen=True, kw_only=True)
class MetricRecord:
    run_id: str
    task_id: str
    attempt: int
    name: str
    step: int                   # the x of the series (0, 1, 2, ... unless given)
    value: float
    timestamp: float


@dataclass(frozen=True, kw_only=True)
class ParamRecord:
    run_id: str
    task_id: str
    name: str
    value: Any


@dataclass(frozen=True, kw_only=True)
class LoggedArtifact:
    run_id: str
    task_id: str
    attempt: int
    name: str
    output: dict[str, Any]      # an output ref


# -- the model registry ----------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class ModelRecord:
    name: str
    created_at: float
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ModelVersionRecord:
    name: str
    version: int
    run_id: str
    task_id: str
    output: dict[str, Any]      # the output ref of the step that produced the model
    created_at: float
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class AliasRecord:
    name: str
    alias: str
    version: int
    updated_at: float




@dataclass(frozen=True, kw_only=True)
class TrialRecord:
    """One trial of a tuning step (its task is ``task_id``)."""

    run_id: str
    step_id: str
    number: int
    task_id: str
    state: str                  # running, complete, pruned, fail
    params: dict[str, Any]
    value: float | None = None
    intermediate: dict[str, float] = field(default_factory=dict)  # step -> reported value



# -- datasets: named, sharded, each shard with the places that hold it -------------------

@dataclass(frozen=True, kw_only=True)
class DatasetRecord:
    name: str
    created_at: float
    description: str = ""


@dataclass(frozen=True, kw_only=True)
class ShardRecord:
    dataset: str
    shard: str                  # the shard's id within the dataset (its file or folder name)
    index: int                  # position in the dataset
    size: int                   # bytes
    digest: str                 # content hash (sha256)
    replicas: list[dict[str, str]] = field(default_factory=list)
    # each replica: {"node": NAME, "path": LOCAL_PATH} or {"url": FSSPEC_URL}


@dataclass(frozen=True, kw_only=True)
class DataReadRecord:
    """One shard read by an attempt (``insitu.shard_path``): where, from where, how much."""

    run_id: str
    task_id: str
    attempt: int
    seq: int                    # order within the attempt
    shard: str                  # "dataset/shard"
    bytes: int
    local: bool                 # read on the node that holds it (a replica or a cached copy)
    source: str                 # the node (or URL) the bytes came from
    node: str                   # the node that read them
    seconds: float = 0.0        # time spent moving them (0 when local)
    via: str = ""               # "replica" or "cache" (local); "transfer", "copy" or "url"
    path: str = ""              # where the bytes are on the reading node (now)


Record = (RunRecord | TaskRecord | AttemptRecord | CacheEntry | MetricRecord | ParamRecord
          | LoggedArtifact | ModelRecord | ModelVersionRecord | AliasRecord | TrialRecord
          | DatasetRecord | ShardRecord | DataReadRecord | ProjectRecord | UserRecord
          | MemberRecord | TokenRecord | AuditRecord)
