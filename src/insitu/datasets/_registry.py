"""Registering datasets and looking them up (records: DatasetRecord, ShardRecord)."""

from __future__ import annotations

import glob
import hashlib
import os
import time
from dataclasses import dataclass
from typing import Any

from insitu.errors import Conflict, UserError, not_found
from insitu.store import DatasetRecord, ShardRecord, Store

_CHUNK = 4 * 1024 * 1024


def _store(store: Store | None) -> Store:
    from insitu.store import open_store  # SQLAlchemy only when a store is opened

    return store or open_store()


def shards_in(value: Any) -> list[dict[str, Any]]:
    """Every shard descriptor (see :meth:`Dataset.shards`) anywhere inside ``value``."""
    if isinstance(value, dict):
        if {"dataset", "shard", "digest"} <= set(value):
            return [value]
        return [s for v in value.values() for s in shards_in(v)]
    if isinstance(value, list):
        return [s for v in value for s in shards_in(v)]
    return []


def _hash_file(f: Any) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    while chunk := f.read(_CHUNK):
        h.update(chunk)
        size += len(chunk)
    return size, h.hexdigest()


def hash_path(path: str) -> tuple[int, str]:
    """Size and sha256 of a file, or of a directory's files (names and contents)."""
    h = hashlib.sha256()
    size = 0
    if os.path.isdir(path):
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for fn in sorted(files):
                full = os.path.join(root, fn)
                h.update(os.path.relpath(full, path).encode() + b"\0")
                s, d = hash_path(full)
                h.update(d.encode())
                size += s
        return size, h.hexdigest()
    with open(path, "rb") as f:
        return _hash_file(f)


def _check_readable(path: str, src: str) -> None:
    """Only regular files and folders are shards (a FIFO or a device would block or never
    end); they must be readable."""
    import stat

    st = os.stat(path)
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise UserError(f"{path} (from {src}) is not a regular file or folder",
                        hint="give the files (or folders) that hold the shards")
    if not os.access(path, os.R_OK):
        raise UserError(f"cannot read {path} (permission denied)",
                        hint=f"check its permissions (ls -l {path})")


def _expand_url(src: str) -> list[tuple[str, int, str, dict[str, str]]]:
    import fsspec

    proto = src.split("://", 1)[0]
    try:
        fs, root = fsspec.core.url_to_fs(src)
    except ImportError as e:
        pkg = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs",
               "abfs": "adlfs", "abfss": "adlfs", "hf": "huggingface_hub"}.get(proto)
        raise UserError(f"reading {proto}:// URLs needs a package that is not installed ({e})",
                        hint=f"pip install {pkg}" if pkg else "install the fsspec "
                             f"implementation for {proto}://") from None
    except ValueError as e:
        raise UserError(f"cannot read {src}: {e}",
                        hint="use a path, or a URL fsspec knows (s3://, gs://, https://, ...)"
                        ) from None
    out = []
    try:
        matches = sorted(fs.glob(root)) if any(c in root for c in "*?[") else [root]
        if not matches or not all(fs.exists(m) for m in matches):
            raise UserError(f"nothing at {src}", hint="check the URL and credentials")
        for m in matches:
            with fs.open(m, "rb") as f:
                size, digest = _hash_file(f)
            url = f"{proto}://{m}" if not m.startswith(f"{proto}://") else m
            out.append((os.path.basename(m.rstrip("/")), size, digest, {"url": url}))
    except UserError:
        raise
    except Exception as e:  # any remote file system's error: one message, not a traceback
        raise UserError(f"cannot read {src}: {type(e).__name__}: {e}",
                        hint="check the URL, your network and credentials") from None
    return out


def _expand(sources: list[str], node: str) -> list[tuple[str, int, str, dict[str, str]]]:
    """(shard id, size, digest, replica) for every file or folder the sources name."""
    out = []
    for src in sources:
        if "://" in src and not src.startswith("file://"):
            out.extend(_expand_url(src))
            continue
        path = src.removeprefix("file://")
        matches = sorted(glob.glob(path)) if any(c in path for c in "*?[") else [path]
        if not matches or not all(os.path.exists(m) for m in matches):
            raise UserError(f"no file or folder matches {src}",
                            hint="give paths (or globs) of the shard files on that node")
        for m in matches:
            _check_readable(m, src)
            size, digest = hash_path(m)
            out.append((os.path.basename(m.rstrip("/")), size, digest,
                        {"node": node, "path": os.path.abspath(m)}))
    return out


@dataclass(frozen=True)
class Dataset:
    """A registered dataset. ``shards()`` describes each shard for ``step.map``."""

    record: DatasetRecord
    shard_records: tuple[ShardRecord, ...]

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def size(self) -> int:
        return sum(s.size for s in self.shard_records)

    def shards(self) -> list[dict[str, Any]]:
        return [{"dataset": self.name, "shard": s.shard, "size": s.size, "digest": s.digest,
                 "replicas": list(s.replicas)} for s in self.shard_records]

    def __repr__(self) -> str:
        return f"<Dataset {self.name}: {len(self.shard_records)} shards, {self.size} bytes>"


def add(name: str, sources: list[str], *, node: str = "local", description: str = "",
        store: Store | None = None, project: str = "default") -> Dataset:
    """Register shards (files or folders, globs allowed, or fsspec URLs) of dataset ``name``.

    Local paths are replicas on ``node``. A shard already registered with the same
    content gains a replica; with different content it is refused. A new dataset belongs
    to ``project``.
    """
    import re

    if len(name) > 128 or not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", name):
        raise UserError(f"invalid dataset name {name[:40]!r}"
                        + ("..." if len(name) > 40 else ""),
                        hint="use at most 128 letters, digits, '_', '-' and '.', starting "
                             "with a letter or digit")
    if not node or not node.strip():
        raise UserError("the node name is empty", hint="give --node NODE (default: local)")
    st = _store(store)
    found = _expand(sources, node)
    existing = {s.shard: s for s in st.select(ShardRecord, dataset=name)}
    records: list[Any] = []
    if not st.select(DatasetRecord, name=name):  # written with the shards, once all are checked
        records.append(DatasetRecord(name=name, created_at=time.time(),
                                     description=description, project=project))
    nxt = len(existing)
    for shard, size, digest, replica in found:
        old = existing.get(shard)
        if old is not None:
            if old.digest != digest:
                raise Conflict(f"shard {shard!r} of dataset {name!r} is already registered "
                               f"with other content ({old.digest[:12]}, now {digest[:12]})",
                               hint="register changed data as a new dataset (e.g. "
                                    f"{name}-v2), or give the new file another name")
            if replica not in old.replicas:
                old = ShardRecord(dataset=name, shard=shard, index=old.index, size=size,
                                  digest=digest, replicas=[*old.replicas, replica])
            records.append(old)
            existing[shard] = old
            continue
        rec = ShardRecord(dataset=name, shard=shard, index=nxt, size=size, digest=digest,
                          replicas=[replica])
        nxt += 1
        existing[shard] = rec
        records.append(rec)
    st.put(*records)
    return dataset(name, store=st)


def dataset(name: str, *, store: Store | None = None) -> Dataset:
    """The registered dataset ``name`` (``NotFound`` with the closest name otherwise)."""
    if len(name) > 128:
        raise UserError(f"invalid dataset name {name[:40]!r}... ({len(name)} characters)",
                        hint="dataset names have at most 128 characters")
    st = _store(store)
    recs = st.select(DatasetRecord, name=name)
    if not recs:
        raise not_found("dataset", name, [d.name for d in st.select(DatasetRecord)],
                        otherwise="register it with `insitu datasets add NAME FILES...`")
    shards = sorted(st.select(ShardRecord, dataset=name), key=lambda s: s.index)
    return Dataset(recs[0], tuple(shards))


def list_datasets(*, store: Store | None = None) -> list[Dataset]:
    st = _store(store)
    return [dataset(d.name, store=st) for d in st.select(DatasetRecord)]


def with_cached_copy(store: Store, shard_id: str, node: str, path: str) -> ShardRecord | None:
    """The shard's record with ``node``'s cached copy at ``path`` added as a replica
    (``{"node", "path", "cached": "true"}``), or None when it is already known (or the
    shard is no longer registered). The caller stores it."""
    name, _, shard = shard_id.partition("/")
    recs = store.select(ShardRecord, dataset=name, shard=shard)
    if not recs or any(r.get("node") == node for r in recs[0].replicas):
        return None
    old = recs[0]
    return ShardRecord(dataset=name, shard=shard, index=old.index, size=old.size,
                       digest=old.digest,
                       replicas=[*old.replicas, {"node": node, "path": path, "cached": "true"}])


def holders(store: Store, shards: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Shard id -> the nodes holding it now (registered replicas and cached copies), for
    shard descriptors taken when a pipeline was compiled."""
    out: dict[str, set[str]] = {}
    for s in shards:
        out.setdefault(f"{s['dataset']}/{s['shard']}", set()).update(
            r["node"] for r in s.get("replicas", []) if r.get("node"))
    for name in {s["dataset"] for s in shards}:
        for rec in store.select(ShardRecord, dataset=name):
            if f"{name}/{rec.shard}" in out:
                out[f"{name}/{rec.shard}"].update(r["node"] for r in rec.replicas
                                                  if r.get("node"))
    return out
