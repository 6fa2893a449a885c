"""The record of a notebook server: what it asked for, where it runs, what it holds.

A starting or running notebook's ``placement`` (as an attempt's) counts against its node in every
engine's placement (``ClaimsTx.running_elsewhere``) while its ``heartbeat_at`` is fresh.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NOTEBOOK_STATES = ("waiting", "starting", "running", "stopped")


@dataclass(frozen=True, kw_only=True)
class NotebookRecord:
    project: str
    name: str
    state: str                     # one of NOTEBOOK_STATES
    cpu: float
    memory: int                    # bytes: reserved, and the limit on its processes
    gpu: float = 0.0
    near: str | None = None        # the dataset it asked to be placed next to
    idle_s: float = 3600.0         # stopped after this long without activity (0: never)
    placement: dict[str, Any] | None = None   # as an attempt's, while it runs
    sock: str | None = None        # the jupyter-server's unix socket, while it runs
    secret: str | None = None      # the jupyter-server's own token (never shown)
    pid: int | None = None
    reason: str | None = None      # why it waits, or why it stopped
    oom: dict[str, Any] | None = None   # the last kernel stopped at its limit
    created_at: float = 0.0
    started_at: float | None = None
    heartbeat_at: float | None = None
    active_at: float | None = None      # its last kernel or connection activity
    created_by: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
