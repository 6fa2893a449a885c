"""A run's artifacts as the API shows them: the metadata of each step's output (and of what
steps logged with ``insitu.log_artifact``), their bytes, and a preview.

An artifact is named by its content digest, and only a digest that one of the run's outputs
refers to is served: a viewer of one project never reads another's bytes by guessing. A
preview never unpickles anything: pickled objects are described, not loaded.
"""

from __future__ import annotations

import io
import json
import mimetypes
import tarfile
from collections.abc import Iterator
from typing import Any

from insitu._config import Config
from insitu.artifacts import ArtifactStore
from insitu.errors import NotFound
from insitu.server._domain import _run
from insitu.store import LoggedArtifact, RunRecord, Store

PREVIEW_ROWS = 20
PREVIEW_BYTES = 64 * 1024
PREVIEW_MAX_BLOB = 64 * 2**20   # larger tables and arrays are described, not read
_IMAGES = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg",
           b"GIF87a": "image/gif", b"GIF89a": "image/gif"}
_TYPES = {"json": "application/json", "npy": "application/octet-stream",
          "parquet": "application/vnd.apache.parquet", "dir": "application/x-tar",
          "pickle": "application/octet-stream"}


def json_safe(value: Any) -> Any:
    """``value`` with what JSON cannot hold (NaN, infinities, other objects) as text."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return str(value)
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _flatten(ref: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(item path, ref) for every stored value of a ref: a map's items are ``0``, ``1``...,
    a tuning step's result its keys."""
    kind = ref.get("kind")
    if kind == "list":
        for i, r in enumerate(ref["items"]):
            yield from _flatten(r, f"{path}/{i}" if path else str(i))
    elif kind == "dict":
        for k, r in ref["items"].items():
            yield from _flatten(r, f"{path}/{k}" if path else str(k))
    else:
        yield path, ref


def _meta(ref: dict[str, Any]) -> dict[str, Any]:
    out = {"digest": ref.get("digest"), "kind": ref.get("kind"),
           "serializer": ref.get("serializer"), "type": ref.get("type"),
           "size": ref.get("size"), "name": ref.get("name")}
    out["content_type"] = content_type(ref)
    return out


def _entries(store: Store, run: RunRecord) -> list[dict[str, Any]]:
    out = []
    for t in store.list_tasks(run.id):
        if t.output is None:
            continue
        for path, ref in _flatten(t.output):
            out.append({"step": t.id, "source": "output", "name": None, "item": path or None,
                        "state": t.state, "cached_from": t.cached_from, **_meta(ref)})
    for la in store.select(LoggedArtifact, run_id=run.id):
        for path, ref in _flatten(la.output):
            out.append({"step": la.task_id, "source": "logged", "attempt": la.attempt,
                        "item": path or None, **_meta(ref), "name": la.name})
    return out


def list_artifacts(store: Store, project: str, run_id: str) -> list[dict[str, Any]]:
    """Every stored value of the run: each step's output (a map's items one by one) and
    what the steps logged."""
    return _entries(store, _run(store, project, run_id))


def _find(store: Store, project: str, run_id: str, digest: str) -> dict[str, Any]:
    run = _run(store, project, run_id)
    for t in store.list_tasks(run.id):
        for _, ref in _flatten(t.output or {}):
            if ref.get("digest") == digest:
                return ref
    for la in store.select(LoggedArtifact, run_id=run.id):
        for _, ref in _flatten(la.output):
            if ref.get("digest") == digest:
                return ref
    raise NotFound(f"run {run.id} has no artifact {digest[:64]!r}",
                   hint=f"list them with GET /api/v1/projects/{project}/runs/{run.id}/artifacts")


def content_type(ref: dict[str, Any]) -> str:
    if ref.get("kind") == "inline":
        return "application/json"
    ser = ref.get("serializer")
    if ser == "file":
        guessed, _ = mimetypes.guess_type(ref.get("name") or "")
        return guessed or "application/octet-stream"
    return _TYPES.get(str(ser), "application/octet-stream")


def filename(ref: dict[str, Any]) -> str:
    ext = {"json": ".json", "npy": ".npy", "parquet": ".parquet", "dir": ".tar",
           "pickle": ".pkl"}
    if ref.get("serializer") == "file" and ref.get("name"):
        return str(ref["name"])
    if ref.get("serializer") == "dir" and ref.get("name"):
        return f"{ref['name']}.tar"
    return f"{str(ref.get('digest'))[:12]}{ext.get(str(ref.get('serializer')), '')}"


def _bytes(cfg: Config, ref: dict[str, Any]) -> bytes:
    if ref.get("kind") == "inline":
        return json.dumps(ref["value"], sort_keys=True, separators=(",", ":")).encode()
    try:
        return ArtifactStore(cfg.artifacts_url).get(ref["digest"])
    except FileNotFoundError:
        raise NotFound(f"the bytes of artifact {ref['digest'][:12]} are missing from the "
                       "artifact store", hint="re-run the step that produced it with "
                                              "--no-cache") from None


def download(store: Store, cfg: Config, project: str, run_id: str, digest: str
             ) -> tuple[bytes, str, str]:
    """(bytes, content type, file name) of one of the run's artifacts."""
    ref = _find(store, project, run_id, digest)
    return _bytes(cfg, ref), content_type(ref), filename(ref)


def _image_type(data: bytes, name: str | None) -> str | None:
    for magic, kind in _IMAGES.items():
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    guessed, _ = mimetypes.guess_type(name or "")
    return guessed if guessed and guessed.startswith("image/") else None


def _text(data: bytes) -> str | None:
    head = data[:PREVIEW_BYTES]
    if b"\x00" in head:
        return None
    try:
        return head.decode()
    except UnicodeDecodeError as e:
        if e.start >= len(head) - 3:  # a character cut at the end of the preview
            return head[:e.start].decode()
        return None


def preview(store: Store, cfg: Config, project: str, run_id: str, digest: str
            ) -> dict[str, Any]:
    """A look at one artifact: the first rows of a DataFrame, a JSON value, the start of a
    text file, an image's content type (its bytes are the download), a NumPy array's shape
    and first values, a folder's files. Pickled objects are only described."""
    ref = _find(store, project, run_id, digest)
    base = {"digest": digest, **_meta(ref)}
    if ref.get("kind") == "inline":
        return {**base, "preview": "json", "value": ref["value"]}
    ser = ref.get("serializer")
    size = int(ref.get("size") or 0)
    if ser == "pickle":
        return {**base, "preview": "none",
                "note": f"a pickled {ref.get('type')}: load it in Python to look inside"}
    if ser in ("parquet", "npy", "json") and size > PREVIEW_MAX_BLOB:
        return {**base, "preview": "none",
                "note": f"{size} bytes: too large to preview; download it"}
    data = _bytes(cfg, ref)
    if ser == "parquet":
        import pandas as pd

        frame = pd.read_parquet(io.BytesIO(data))
        head = frame.head(PREVIEW_ROWS)
        return {**base, "preview": "table", "columns": [str(c) for c in frame.columns],
                "dtypes": {str(c): str(t) for c, t in frame.dtypes.items()},
                "rows": json.loads(head.to_json(orient="values", date_format="iso",
                                                default_handler=str)),
                "total_rows": len(frame)}
    if ser == "npy":
        import numpy as np

        arr = np.load(io.BytesIO(data), allow_pickle=False)
        flat = arr.reshape(-1)[:PREVIEW_ROWS]
        return {**base, "preview": "array", "shape": list(arr.shape), "dtype": str(arr.dtype),
                "values": json_safe(flat.tolist())}
    if ser == "json":
        return {**base, "preview": "json", "value": json.loads(data)}
    if ser == "dir":
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            files = [{"path": m.name, "size": m.size} for m in tar.getmembers() if m.isfile()]
        return {**base, "preview": "files", "files": files[:200], "total_files": len(files)}
    image = _image_type(data[:16], ref.get("name"))
    if image is not None:
        return {**base, "preview": "image", "content_type": image}
    text = _text(data)
    if text is not None:
        return {**base, "preview": "text", "text": text, "truncated": len(data) > PREVIEW_BYTES}
    return {**base, "preview": "none", "note": "binary content: download it"}
