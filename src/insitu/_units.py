"""Parsing and printing of resource quantities (memory, CPU, GPU, durations)."""

from __future__ import annotations

import math
import re

from insitu.errors import ResourceError

_MEM_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "ki": 1024, "kib": 1024,
    "m": 1000**2, "mb": 1000**2, "mi": 1024**2, "mib": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gi": 1024**3, "gib": 1024**3,
    "t": 1000**4, "tb": 1000**4, "ti": 1024**4, "tib": 1024**4,
}
_MEM_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([A-Za-z]*)\s*$")


def parse_memory(value: object, *, what: str = "memory") -> int:
    """Return a byte count from ``"2GiB"``, ``"512MiB"``, ``"1.5GB"``, ``"2Gi"`` or an int of bytes.

    Raises :class:`ResourceError` naming the bad value and the accepted forms.
    """
    if isinstance(value, bool):
        raise _bad_memory(value, what)
    if isinstance(value, int):
        if value <= 0:
            raise _bad_memory(value, what)
        return value
    if isinstance(value, float):
        if value <= 0 or not math.isfinite(value):
            raise _bad_memory(value, what)
        return int(value)
    if not isinstance(value, str):
        raise _bad_memory(value, what)
    m = _MEM_RE.match(value)
    if not m or m.group(2).lower() not in _MEM_UNITS:
        raise _bad_memory(value, what)
    n = float(m.group(1)) * _MEM_UNITS[m.group(2).lower()]
    if n <= 0:
        raise _bad_memory(value, what)
    return int(n)


def _bad_memory(value: object, what: str) -> ResourceError:
    return ResourceError(
        f"invalid {what} {value!r}",
        hint='write a size such as "512MiB", "2GiB", "1.5GB" or a number of bytes',
    )


def format_bytes(n: float | None) -> str:
    """``1536 -> '1.5 KiB'``; binary units, one decimal."""
    if n is None:
        return "-"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def suggest_memory(peak: int, limit: int, failed: int | None = None) -> str:
    """A limit to suggest after an out-of-memory: twice the limit, 1.5x the peak, or the
    peak plus the allocation that failed (or was in progress) when that is known, whichever
    is largest; rounded up (to 256 MiB below 1 GiB, to 512 MiB above), never at or below
    the old limit."""
    mib = 1024**2
    gib = 1024**3
    want = max(2 * limit, int(1.5 * peak), peak + (failed or 0))
    step = 256 * mib if want < gib else 512 * mib
    rounded = max(math.ceil(want / step), 1) * step
    if rounded <= limit:
        rounded = (limit // step + 1) * step
    if rounded < gib:
        return f"{rounded // mib}MiB"
    n = rounded / gib
    return f"{n:g}GiB"


def parse_cpu(value: object, *, what: str = "cpu") -> float:
    """CPU cores as a positive float: ``2``, ``0.5``, ``"500m"``."""
    if isinstance(value, str) and value.endswith("m"):
        try:
            value = float(value[:-1]) / 1000
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ResourceError(f"invalid {what} {value!r}",
                            hint='give a positive number of cores, e.g. cpu=2, cpu=0.5 or "500m"')
    return float(value)


def parse_gpu(value: object) -> float:
    """GPUs: a whole count (1, 2, ...) or a fraction of one GPU (0 < x < 1)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ResourceError(
            f"invalid gpu {value!r}",
            hint="give a whole number of GPUs (gpu=1) or a fraction of one (gpu=0.25)")
    v = float(value)
    if v > 1 and not v.is_integer():
        raise ResourceError(f"invalid gpu {value!r}: more than one GPU must be a whole number",
                            hint="ask for gpu=2, or a fraction below 1 such as gpu=0.5")
    return v


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(seconds), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"
