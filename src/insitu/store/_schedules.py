"""Records of schedules: a pipeline fired on a cron, and the ticks it has fired or skipped.

A tick is keyed by (project, schedule, at): whoever writes it first (with ``Store.insert``)
owns it, so a restart or a second server never fires a tick twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CATCHUP = ("all", "latest", "none")


@dataclass(frozen=True, kw_only=True)
class ScheduleRecord:
    project: str
    name: str
    pipeline: str                # the spec's name
    spec: dict[str, Any]         # function refs relative to ``package`` (or by value)
    cron: str
    timezone: str                # an IANA name, e.g. "Europe/Berlin"
    created_at: float
    start_at: float              # ticks after this count (creation, or the last resume)
    package: str | None = None   # digest of the code package, None for by-value functions
    params: dict[str, Any] = field(default_factory=dict)
    catchup: str = "latest"      # one of CATCHUP
    max_concurrent: int = 1
    paused: bool = False
    created_by: str | None = None


@dataclass(frozen=True, kw_only=True)
class TickRecord:
    project: str
    schedule: str
    at: float                    # the tick's time (seconds since the epoch, UTC)
    state: str                   # "fired" or "skipped"
    kind: str = "cron"           # "cron" or "backfill"
    run_id: str | None = None
    reason: str | None = None    # why a tick was skipped
    recorded_at: float = 0.0
    by: str = ""                 # the server (host:pid) that recorded it
