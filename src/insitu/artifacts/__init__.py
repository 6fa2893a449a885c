"""Artifacts: step outputs kept by content hash over fsspec (see ``_serde`` for the refs)."""

from insitu.artifacts._serde import content_id, digests_of, dump, load
from insitu.artifacts._store import ArtifactStore

__all__ = ["ArtifactStore", "content_id", "digests_of", "dump", "load"]
