"""Step functions for the memory-limit and error-report tests of the executors (plain
functions: the tests launch them directly)."""

from __future__ import annotations

import mmap
import time

MIB = 1024**2


def reserve_and_hold(resident_mib: int, reserve_gib: int, seconds: float) -> int:
    """Reserve gigabytes of private address space, keep ``resident_mib`` of it resident."""
    area = mmap.mmap(-1, reserve_gib * 1024 * MIB,
                     flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    for i in range(0, resident_mib * MIB, 4096):
        area[i] = 1
    time.sleep(seconds)  # held while the limit is looked at
    return len(area)


def touch(mib: int) -> int:
    block = bytearray(mib * MIB)
    for i in range(0, len(block), 4096):
        block[i] = 1
    return len(block)


def ones(gib: float) -> float:
    import numpy as np

    return float(np.ones(int(gib * 1024 * MIB) // 8).sum())


def _pick(table: object, column: str) -> object:
    return table[column]  # type: ignore[index]


def missing_column() -> object:
    import pandas as pd

    df = pd.DataFrame({"a": [1, 2]})
    return _pick(df, "missing")
