"""Records of endpoints on the server: what an endpoint should be (written by the API) and
what its serving process is doing (written by the server that runs it).

The two are apart so that neither writer overwrites the other's fields: a change of traffic
never races a restart being recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, kw_only=True)
class EndpointRecord:
    """An endpoint as asked for: the model reference and the serving settings (``config``:
    replicas, resources per replica, traffic, batching, payload logging)."""

    project: str
    name: str
    model: str                                   # "fraud@champion", "fraud:3" or "fraud"
    config: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0
    created_by: str | None = None
    generation: int = 1                          # bumped by every change that needs a restart


@dataclass(frozen=True, kw_only=True)
class EndpointStatusRecord:
    """What the server running the endpoint last saw: ``state`` is ``waiting`` (it does not
    fit; ``reason`` says why), ``starting``, ``running`` or ``failed`` (``reason``: the
    cause, from its log)."""

    project: str
    name: str
    state: str
    reason: str | None = None
    node: str | None = None
    placement: dict[str, Any] = field(default_factory=dict)
    pid: int | None = None
    generation: int = 0
    restarts: int = 0
    started_at: float | None = None
    updated_at: float = 0.0
    by: str = ""                                 # the server (host:pid) that runs it
