"""Whose code a traceback frame is in: the user's, a library's, the standard library's, or
insitu's. Used to point at the user's own line when an exception is raised deep inside a
library the user called."""

from __future__ import annotations

import os
import sys
import sysconfig
from functools import cache
from typing import Any, Literal

Where = Literal["user", "library", "stdlib", "insitu"]

_PKG = os.path.dirname(os.path.abspath(__file__)) + os.sep


@cache
def _stdlib_dirs() -> tuple[str, ...]:
    dirs = set()
    for key in ("stdlib", "platstdlib"):
        p = sysconfig.get_paths().get(key)
        if p:
            dirs.add(os.path.realpath(p) + os.sep)
            dirs.add(os.path.abspath(p) + os.sep)
    for prefix in {sys.base_prefix, sys.base_exec_prefix}:
        v = f"python{sys.version_info.major}.{sys.version_info.minor}"
        dirs.add(os.path.join(prefix, "lib", v) + os.sep)
    return tuple(dirs)


def frame_where(file: str | None) -> Where:
    """Classify a frame by its file path alone (for records written before frames carried
    their ``where``)."""
    if not file:
        return "library"
    if file.startswith("<frozen ") or file.startswith("<string>"):
        return "stdlib" if file.startswith("<frozen ") else "user"
    path = os.path.abspath(file)
    parts = path.split(os.sep)
    if path.startswith(_PKG):
        return "insitu"
    if "site-packages" in parts or "dist-packages" in parts:
        return "library"
    if path.startswith(_stdlib_dirs()):
        return "stdlib"
    if not file.startswith(os.sep) and not os.path.exists(path) and (
            file.endswith((".pyx", ".pxi", ".pxd"))):
        return "library"  # compiled extension frames name their source relative to nowhere
    return "user"


def frames_with_where(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``frames`` each with a ``where`` (kept when present, else classified by path)."""
    return [f if f.get("where") else {**f, "where": frame_where(f.get("file"))} for f in frames]


__all__ = ["Where", "frame_where", "frames_with_where"]
