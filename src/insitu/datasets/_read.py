"""Reading a shard inside a step: local replica first, else fetch once and cache."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile
import time
from typing import Any

from insitu.datasets._transfer import TransferError, fetch
from insitu.errors import UserError


def _journal(rec: dict[str, Any]) -> None:
    from insitu.tracking import _log

    if _log._ctx is not None:
        _log._ctx.write(rec)


def _cache_root(node: str) -> pathlib.Path:
    """This node's shard cache: ``INSITU_SHARD_CACHE``, else under its data directory."""
    if os.environ.get("INSITU_SHARD_CACHE"):
        return pathlib.Path(os.environ["INSITU_SHARD_CACHE"])
    if os.environ.get("INSITU_DATA_DIR"):
        return pathlib.Path(os.environ["INSITU_DATA_DIR"]) / ".shard-cache"
    home = os.environ.get("INSITU_HOME", os.path.expanduser("~/.insitu"))
    return pathlib.Path(home) / "shard-cache" / node


def _services() -> dict[str, str]:
    """Node name -> its transfer service URL, as the executor passed them (may be empty)."""
    try:
        return dict(json.loads(os.environ.get("INSITU_TRANSFER") or "{}"))
    except ValueError:
        return {}


def shard_path(shard: dict[str, Any]) -> pathlib.Path:
    """A local path to ``shard``'s bytes on the node this step runs on.

    Uses this node's replica when it has one, or its cached copy; otherwise fetches a
    replica (from another node's transfer service, or from its URL) into this node's shard
    cache, where later steps on this node find it, and counts the bytes as moved, with
    where they came from. Fails with the shard's name and its known locations when no
    replica can be read.
    """
    node = os.environ.get("INSITU_NODE", "local")
    name = f"{shard.get('dataset')}/{shard.get('shard')}"
    replicas = shard.get("replicas") or []
    size = int(shard.get("size", 0))

    def journal(via: str, source: str, path: pathlib.Path | str, seconds: float = 0.0) -> None:
        _journal({"t": "io", "shard": name, "bytes": size, "local": via in ("replica", "cache"),
                  "from": source, "node": node, "via": via, "path": str(path),
                  "seconds": round(seconds, 6)})

    for r in replicas:
        if r.get("node") == node and r.get("path") and os.path.exists(r["path"]):
            journal("cache" if r.get("cached") else "replica", node, r["path"])
            return pathlib.Path(r["path"])
    target = _cache_root(node) / shard["digest"] / str(shard["shard"])
    if target.exists():
        journal("cache", node, target)
        return target
    services = _services()
    # other nodes' replicas first (through their transfer service when there is one),
    # then URLs
    order = sorted(replicas, key=lambda r: (not r.get("node"), r.get("node") not in services))
    errors = []
    for r in order:
        t0 = time.monotonic()
        try:
            if r.get("node") and r["node"] in services:
                via = "transfer"
                fetch(services[r["node"]], r["path"], target, size=size, digest=shard["digest"])
            else:
                via = "copy" if r.get("node") else "url"
                _copy(r, target)
        except OSError as e:
            src = f"{r['node']}:{r.get('path')}" if r.get("node") else str(r.get("url"))
            errors.append(f"{src} ({e})" if isinstance(e, TransferError)
                          else f"{src} ({e.__class__.__name__})")
            continue
        journal(via, r.get("node") or r.get("url") or "?", target, time.monotonic() - t0)
        return target
    where = "; ".join(f"{r.get('node')}:{r.get('path')}" if r.get("node") else str(r.get("url"))
                      for r in replicas) or "none"
    raise UserError(f"shard {name} cannot be read: no replica is reachable (last known "
                    f"locations: {where})" + (f"; tried {', '.join(errors)}" if errors else ""),
                    hint="restore a replica, or re-register the shard with "
                         "`insitu datasets add`")


def _copy(replica: dict[str, Any], target: pathlib.Path) -> None:
    """Copy a replica this process can open directly: a path on this machine (a node
    without a transfer service shares this machine's filesystem), or an fsspec URL."""
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
        if not (target.is_dir() and tmp.is_dir()):
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)
