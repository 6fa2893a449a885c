"""Content-addressed blobs over fsspec.

Contract: ``put(data)`` returns the sha256 hex digest of ``data`` and stores the
bytes under it; writing the same bytes twice is a no-op; a blob is either wholly
present or absent (local writes go through a temporary file and a rename;
object stores write whole objects). ``exists`` is the truth a cache hit relies on.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from typing import Any


class ArtifactStore:
    """Blobs under ``url``: a local directory (plain file I/O) or any fsspec URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.fs: Any = None
        if "://" not in url or url.startswith("file://"):
            self.local = True
            self.root = os.path.abspath(url.removeprefix("file://"))
            os.makedirs(self.root, exist_ok=True)
        else:
            import fsspec  # imported only for remote stores

            self.local = False
            self.fs, self.root = fsspec.core.url_to_fs(url)

    def path(self, digest: str) -> str:
        return f"{self.root.rstrip('/')}/{digest[:2]}/{digest}"

    def put(self, data: bytes, digest: str | None = None) -> str:
        digest = digest or hashlib.sha256(data).hexdigest()
        p = self.path(digest)
        if not (os.path.exists(p) if self.local else self.fs.exists(p)):
            self.write(p, data)
        return digest

    def write(self, path: str, data: bytes) -> None:
        """Write ``data`` at ``path`` under this store, whole or not at all (a local file is
        written beside it and renamed into place; an fsspec store writes an object at once)."""
        if not self.local:
            self.fs.pipe_file(path, data)
            return
        d = os.path.dirname(path)
        os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def get(self, digest: str) -> bytes:
        p = self.path(digest)
        if self.local:
            with open(p, "rb") as f:
                return f.read()
        return self.fs.cat_file(p)

    def exists(self, digest: str) -> bool:
        p = self.path(digest)
        return os.path.exists(p) if self.local else bool(self.fs.exists(p))

    def open(self, digest: str) -> Any:
        if self.local:
            return open(self.path(digest), "rb")
        return self.fs.open(self.path(digest), "rb")


_stores: dict[str, ArtifactStore] = {}


def artifact_store(url: str) -> ArtifactStore:
    """One store object per URL per process (a fork server makes it once, before forking)."""
    if url not in _stores:
        _stores[url] = ArtifactStore(url)
    return _stores[url]
