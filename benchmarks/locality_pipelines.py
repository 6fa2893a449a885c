"""The scan-and-aggregate pipeline of benchmarks/locality.py: one task per shard, a reduce."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import insitu

CHUNK = 8 << 20


def scan_file(path: Path) -> dict[str, int]:
    """Bytes, and how many of them are zero: a pass over every byte."""
    n = zeros = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            n += len(chunk)
            zeros += chunk.count(0)
    return {"bytes": n, "zeros": zeros}


@insitu.step(cpu=1, memory="512MiB", retries=1)  # retries: restartable, may use spot nodes
def scan(shard: dict[str, Any]) -> dict[str, int]:
    return scan_file(insitu.shard_path(shard))


@insitu.step(cpu=0.5, memory="256MiB")
def aggregate(parts: list[dict[str, int]]) -> dict[str, int]:
    return {"bytes": sum(p["bytes"] for p in parts), "zeros": sum(p["zeros"] for p in parts)}


@insitu.pipeline
def scan_aggregate() -> None:
    aggregate(scan.map(insitu.dataset("locbench").shards()))
