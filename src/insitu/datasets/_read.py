"""Reading a shard inside a step: local replica first, else fetch once and cache."""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
from typing import Any

from insitu.errors import UserError


def _journal(rec: dict[str, Any]) -> None:
    from insitu.tracking import _log

    if _log._ctx is not None:
        _log._ctx.write(rec)


def shard_path(shard: dict[str, Any]) -> pathlib.Path:
    """A local path to ``shard``'s bytes on the node this step runs on.

    Uses this node's replica when it has one; otherwise copies another replica into this
    node's shard cache (kept for later steps) and counts the bytes as moved. Fails with
    the shard's name and its known locations when no replica can be read.
    """
    node = os.environ.get("INSITU_NODE", "local")
    name = f"{shard.get('dataset')}/{shard.get('shard')}"
    replicas = shard.get("replicas") or []
    for r in replicas:
        if r.get("node") == node and r.get("path") and os.path.exists(r["path"]):
            _journal({"t": "io", "shard": name, "bytes": shard["size"], "local": True,
                      "from": node})
            return pathlib.Path(r["path"])
    cache_root = os.environ.get("INSITU_SHARD_CACHE") or os.path.join(
        os.environ.get("INSITU_HOME", os.path.expanduser("~/.insitu")), "shard-cache", node)
    target = pathlib.Path(cache_root) / shard["digest"] / str(shard["shard"])
    if target.exists():
        _journal({"t": "io", "shard": name, "bytes": shard["size"], "local": True,
                  "from": node, "cached": True})
        return target
    errors = []
    for r in replicas:
        src = r.get("path") or r.get("url")
        try:
            _fetch(r, target)
        except OSError as e:
            errors.append(f"{r.get('node') or 'url'}:{src} ({e.__class__.__name__})")
            continue
        _journal({"t": "io", "shard": name, "bytes": shard["size"], "local": False,
                  "from": r.get("node") or r.get("url")})
        return target
    where = "; ".join(f"{r.get('node')}:{r.get('path')}" if r.get("node") else str(r.get("url"))
                      for r in replicas) or "none"
    raise UserError(f"shard {name} cannot be read: no replica is reachable (last known "
                    f"locations: {where})" + (f"; tried {', '.join(errors)}" if errors else ""),
                    hint="restore a replica, or re-register the shard with "
                         "`insitu datasets add`")


def _fetch(replica: dict[str, Any], target: pathlib.Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(dir=target.parent, prefix=".fetch-")) / target.name
    try:
        if replica.get("path"):
            src = replica["path"]
            if not os.path.exists(src):
                raise FileNotFoundError(src)
            if os.path.isdir(src):
                shutil.copytree(src, tmp)
            else:
                shutil.copyfile(src, tmp)
        else:
            import fsspec

            fs, p = fsspec.core.url_to_fs(replica["url"])
            if fs.isdir(p):
                fs.get(p, str(tmp), recursive=True)
            else:
                fs.get(p, str(tmp))
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)
