"""Records: immutable values the store reads and writes.

Every record is a frozen, keyword-only dataclass. The store hands out new
objects; later writes never change a record already returned. Change one with
``dataclasses.replace`` and ``Store.put`` it back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from insitu.store._endpoints import EndpointRecord, EndpointStatusRecord
from insitu.store._notebooks import NotebookRecord
from insitu.store._schedules import ScheduleRecord, TickRecord
from insitu.store._states import (  # noqa: F401 - re-exported
    ATT_TERMINAL,
    INTERRUPTED,
    RUN_TERMINAL,
    TASK_DONE,
    TASK_TERMINAL,
    AttemptState,
    RunState,
    TaskState,
)
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

# The states, as the names the rest of insitu has long used (see ``_states.py``)
RUN_PENDING = RunState.PENDING
RUN_RUNNING = RunState.RUNNING
RUN_SUCCEEDED = RunState.SUCCEEDED
RUN_FAILED = RunState.FAILED
RUN_CANCELLED = RunState.CANCELLED

TASK_PENDING = TaskState.PENDING
TASK_RUNNING = TaskState.RUNNING
TASK_SUCCEEDED = TaskState.SUCCEEDED
TASK_CACHED = TaskState.CACHED
TASK_FAILED = TaskState.FAILED
TASK_SKIPPED = TaskState.SKIPPED
TASK_CANCELLED = TaskState.CANCELLED
TASK_PRUNED = TaskState.PRUNED

ATT_RUNNING = AttemptState.RUNNING
ATT_SUCCEEDED = AttemptState.SUCCEEDED
ATT_FAILED = AttemptState.FAILED
ATT_LOST = AttemptState.LOST
ATT_CANCELLED = AttemptState.CANCELLED
ATT_PRUNED = AttemptState.PRUNED


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
    supervised: bool = False     # a server's supervisor gives it to an engine (a lease)


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
    cached_from: str | None = None   # "RUN_ID/TASK_ID" of the task a cache hit came from
    retries_from: int = 0       # failed attempts numbered above this use up its retries


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
    limits: dict[str, Any] | None = None  # {"memory": bytes, "enforcement": how}


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
    project: str = "default"     # the project it belongs to; its name is unique within it


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
    flavor: str = ""            # the framework of the object, e.g. "sklearn" ("" if unknown)
    project: str = "default"     # its model's project


@dataclass(frozen=True, kw_only=True)
class AliasRecord:
    name: str
    alias: str
    version: int
    updated_at: float
    project: str = "default"     # its model's project




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
    project: str = "default"     # the project it belongs to


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
          | MemberRecord | TokenRecord | AuditRecord | SessionRecord | LoginRecord
          | QuotaRecord | ClaimRecord | ScheduleRecord | TickRecord | PackageRecord
          | EndpointRecord | EndpointStatusRecord | NotebookRecord)
