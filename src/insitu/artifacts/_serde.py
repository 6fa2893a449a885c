"""Turning step outputs into output refs and back.

An *output ref* is a JSON dict describing one stored value:

- ``{"kind": "inline", "serializer": "json", "value": v, "digest": d, "size": n}`` for
  small JSON values (kept in the metadata store itself);
- ``{"kind": "blob", "serializer": s, "digest": d, "size": n, "type": t, "name": f}``
  for bytes in the artifact store, ``s`` one of ``json``, ``npy`` (NumPy arrays),
  ``parquet`` (pandas DataFrames), ``file``, ``dir`` (a tar of the directory),
  ``pickle`` (anything else, through cloudpickle);
- ``{"kind": "list", "items": [ref, ...]}`` for the outputs of a ``map``;
- ``{"kind": "dict", "items": {key: ref, ...}}`` for a tuning step's result.

Returning a ``pathlib.Path`` from a step stores that file or directory; the
consumer receives a ``Path`` to a read-only local copy.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pathlib
import tarfile
from typing import Any

from insitu.artifacts._store import ArtifactStore
from insitu.errors import NotFound, SerializationError

INLINE_LIMIT = 16 * 1024


def _canonical_json(value: Any) -> bytes | None:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"),
                          allow_nan=False).encode()
    except (TypeError, ValueError):
        return None


def _is_plain_json(value: Any, depth: int = 0) -> bool:
    if depth > 100:
        return False
    if value is None or type(value) in (bool, int, str):
        return True
    if type(value) is float:
        return value == value and value not in (float("inf"), float("-inf"))
    if type(value) in (list, tuple):
        return all(_is_plain_json(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(type(k) is str and _is_plain_json(v, depth + 1) for k, v in value.items())
    return False


def dump(value: Any, store: ArtifactStore, *, step: str = "?") -> dict[str, Any]:
    """Store ``value`` and return its output ref; :class:`SerializationError` if impossible."""
    if _is_plain_json(value):
        data = _canonical_json(value)
        assert data is not None
        digest = hashlib.sha256(data).hexdigest()
        if len(data) <= INLINE_LIMIT:
            return {"kind": "inline", "serializer": "json",
                    "value": json.loads(data) if type(value) is tuple else value,
                    "digest": digest, "size": len(data)}
        return _blob(store, data, "json", type(value).__name__, digest=digest)
    if isinstance(value, pathlib.Path):
        return _dump_path(value, store, step)
    mod = type(value).__module__
    if mod.startswith("numpy") and type(value).__name__ == "ndarray" and value.dtype != object:
        import numpy as np

        buf = io.BytesIO()
        np.save(buf, value, allow_pickle=False)
        return _blob(store, buf.getvalue(), "npy", "numpy.ndarray")
    if mod.startswith("pandas") and type(value).__name__ == "DataFrame":
        try:
            buf = io.BytesIO()
            value.to_parquet(buf)
            return _blob(store, buf.getvalue(), "parquet", "pandas.DataFrame")
        except Exception:  # noqa: BLE001 - e.g. non-string column names: fall back to pickle
            pass
    import cloudpickle

    try:
        data = cloudpickle.dumps(value)
    except Exception as e:  # noqa: BLE001
        raise SerializationError(
            f"step '{step}' returned a {type(value).__module__}.{type(value).__qualname__}, "
            f"which cannot be serialised: {type(e).__name__}: {e}",
            hint="return JSON values, NumPy arrays, pandas DataFrames, a pathlib.Path to a "
                 "file or directory, or a picklable object (open files, sockets, locks and "
                 "generators are not)") from None
    return _blob(store, data, "pickle", f"{type(value).__module__}.{type(value).__qualname__}")


def _blob(store: ArtifactStore, data: bytes, serializer: str, typ: str, *,
          digest: str | None = None, name: str | None = None) -> dict[str, Any]:
    d = store.put(data, digest)
    ref = {"kind": "blob", "serializer": serializer, "digest": d, "size": len(data),
           "type": typ}
    if name:
        ref["name"] = name
    return ref


def _dump_path(p: pathlib.Path, store: ArtifactStore, step: str) -> dict[str, Any]:
    if p.is_file():
        return _blob(store, p.read_bytes(), "file", "file", name=p.name)
    if p.is_dir():
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for fn in sorted(files):
                    full = os.path.join(root, fn)
                    info = tar.gettarinfo(full, arcname=os.path.relpath(full, p))
                    info.mtime = 0
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    with open(full, "rb") as f:
                        tar.addfile(info, f)
        return _blob(store, buf.getvalue(), "dir", "directory", name=p.name)
    raise SerializationError(f"step '{step}' returned the path {p}, which does not exist",
                             hint="return the path of a file or directory the step wrote")


def load(ref: dict[str, Any], store: ArtifactStore, *, materialize_dir: str | None = None
         ) -> Any:
    """The value an output ref stands for."""
    kind = ref.get("kind")
    if kind == "inline":
        return ref["value"]
    if kind == "list":
        return [load(r, store, materialize_dir=materialize_dir) for r in ref["items"]]
    if kind == "dict":
        return {k: load(r, store, materialize_dir=materialize_dir)
                for k, r in ref["items"].items()}
    ser = ref["serializer"]
    digest = ref["digest"]
    if ser in ("file", "dir"):
        return _materialize(ref, store, materialize_dir)
    try:
        data = store.get(digest)
    except FileNotFoundError:
        raise NotFound(f"artifact {digest[:12]} ({ref.get('type')}) is missing from "
                       f"{store.url}", hint="its bytes were deleted; re-run the step that "
                       "produced it with --no-cache") from None
    if ser == "json":
        return json.loads(data)
    if ser == "npy":
        import numpy as np

        return np.load(io.BytesIO(data), allow_pickle=False)
    if ser == "parquet":
        import pandas as pd

        return pd.read_parquet(io.BytesIO(data))
    if ser == "pickle":
        import cloudpickle

        return cloudpickle.loads(data)
    raise NotFound(f"unknown serializer {ser!r} in output ref")


def _materialize(ref: dict[str, Any], store: ArtifactStore, base: str | None) -> pathlib.Path:
    if base is None:
        from insitu._config import load_config

        base = str(load_config().home / "materialized")
    target = pathlib.Path(base) / ref["digest"] / (ref.get("name") or "artifact")
    if target.exists():
        return target
    tmp = target.parent.with_name(target.parent.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    out = tmp / target.name
    try:
        data = store.get(ref["digest"])
    except FileNotFoundError:
        raise NotFound(f"artifact {ref['digest'][:12]} ({ref.get('name')}) is missing from "
                       f"{store.url}") from None
    if ref["serializer"] == "file":
        out.write_bytes(data)
    else:
        out.mkdir()
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(out, filter="data")
    try:
        os.replace(tmp, target.parent)
    except OSError:  # another process materialised it first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return target


def digests_of(ref: dict[str, Any]) -> list[str]:
    """Every artifact-store digest a ref depends on (inline values have none)."""
    if ref.get("kind") == "list":
        return [d for r in ref["items"] for d in digests_of(r)]
    if ref.get("kind") == "dict":
        return [d for r in ref["items"].values() for d in digests_of(r)]
    if ref.get("kind") == "blob":
        return [ref["digest"]]
    return []


def content_id(ref: dict[str, Any]) -> str:
    """A stable identity of the content a ref stands for (used in cache keys)."""
    if ref.get("kind") == "list":
        return "[" + ",".join(content_id(r) for r in ref["items"]) + "]"
    if ref.get("kind") == "dict":
        return "{" + ",".join(f"{k}:{content_id(r)}" for k, r in sorted(ref["items"].items())) \
            + "}"
    return str(ref["digest"])
