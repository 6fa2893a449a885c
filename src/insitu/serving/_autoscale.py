"""How many replicas a model version wants: a pure function of the policy and what the pool
saw (in-flight requests, time since the last request, time since the last scale-up)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from insitu.errors import UserError


@dataclass(frozen=True, kw_only=True)
class Autoscaling:
    """Replicas between ``min_replicas`` and ``max_replicas``, about ``target_concurrency``
    requests in flight on each; with ``min_replicas=0`` the version scales to zero after
    ``idle_seconds`` without a request, and back on the next one (which waits, not fails).
    A replica is removed only after ``scale_down_seconds`` without needing it."""

    min_replicas: int = 1
    max_replicas: int = 1
    target_concurrency: float = 16.0
    idle_seconds: float = 300.0
    scale_down_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.min_replicas < 0 or self.max_replicas < 1 or \
                self.min_replicas > self.max_replicas:
            raise UserError(f"replicas must satisfy 0 <= min <= max and max >= 1; got min "
                            f"{self.min_replicas}, max {self.max_replicas}",
                            hint="e.g. --min 0 --max 4")
        if not self.target_concurrency > 0 or not self.idle_seconds > 0 or \
                not self.scale_down_seconds >= 0:
            raise UserError("target concurrency and idle time must be positive",
                            hint="e.g. --idle 300")


def desired(policy: Autoscaling, *, current: int, in_flight: int, idle_for: float,
            since_scale_up: float) -> int:
    """The number of replicas to have now."""
    if in_flight == 0 and policy.min_replicas == 0 and idle_for >= policy.idle_seconds:
        return 0
    want = max(policy.min_replicas, 1, math.ceil(in_flight / policy.target_concurrency))
    want = min(want, policy.max_replicas)
    if want < current and since_scale_up < policy.scale_down_seconds:
        return current
    return want
