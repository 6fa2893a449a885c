"""The metadata store: one interface (:class:`Store`) over SQLAlchemy.

See ``_base.py`` for the contract every backend honours, and
:mod:`insitu.testing.store_conformance` for the suite that checks it.
"""

from typing import TYPE_CHECKING, Any

from insitu.store._base import Store
from insitu.store._endpoints import EndpointRecord, EndpointStatusRecord
from insitu.store._notebooks import NOTEBOOK_STATES, NotebookRecord
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
from insitu.store._schedules import CATCHUP, ScheduleRecord, TickRecord
from insitu.store._tenancy import (
    ROLES,
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

if TYPE_CHECKING:
    from insitu.store._sql import SQLStore, open_store

__all__ = ["CATCHUP", "ROLES", "AliasRecord", "AttemptRecord", "AuditRecord", "CacheEntry",
           "ClaimRecord", "DataReadRecord", "DatasetRecord", "EndpointRecord",
           "EndpointStatusRecord", "LoggedArtifact", "LoginRecord",
           "MemberRecord", "MetricRecord", "ModelRecord", "ModelVersionRecord", "NOTEBOOK_STATES",
           "NotebookRecord", "PackageRecord",
           "ParamRecord", "ProjectRecord", "QuotaRecord", "Record", "RunRecord", "SQLStore",
           "ScheduleRecord", "SessionRecord", "ShardRecord", "Store", "TaskRecord",
           "TickRecord", "TokenRecord", "TrialRecord", "UserRecord", "open_store"]


def __getattr__(name: str) -> Any:
    # SQLAlchemy is imported only when a store is opened
    if name in ("SQLStore", "open_store"):
        from insitu.store import _sql

        return getattr(_sql, name)
    raise AttributeError(f"module 'insitu.store' has no attribute {name!r}")
