"""The metadata store: one interface (:class:`Store`) over SQLAlchemy.

See ``_base.py`` for the contract every backend honours, and
:mod:`insitu.testing.store_conformance` for the suite that checks it.
"""

from insitu.store._base import Store
from insitu.store._records import AttemptRecord, CacheEntry, Record, RunRecord, TaskRecord
from insitu.store._sql import SQLStore, open_store

__all__ = ["AttemptRecord", "CacheEntry", "Record", "RunRecord", "SQLStore", "Store",
           "TaskRecord", "open_store"]
