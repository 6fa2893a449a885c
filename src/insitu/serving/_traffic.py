"""Traffic between the versions of one endpoint: the stable version (the alias's), a canary
taking a percentage, a shadow receiving a mirrored share whose answers are logged and never
returned, and A/B routes chosen by a request header. Pure functions of the policy, the
header and a random draw, so each rule is testable alone."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from insitu.errors import UserError


def _percent(what: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and 0 <= value <= 100):
        raise UserError(f"{what} percentage {value!r} is out of range",
                        hint="give a number from 0 to 100")


@dataclass(frozen=True, kw_only=True)
class Traffic:
    """Which version answers. ``canary`` takes ``percent`` % of the requests not routed by
    the A/B header; ``shadow`` gets a copy of ``shadow_percent`` % of all requests."""

    canary: int | None = None
    percent: float = 0.0
    shadow: int | None = None
    shadow_percent: float = 100.0
    header: str | None = None
    routes: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _percent("canary", self.percent)
        _percent("shadow", self.shadow_percent)
        if self.canary is None and self.percent:
            raise UserError(f"a canary percentage ({self.percent}) without a canary version",
                            hint="name the canary version, e.g. --canary fraud:4")
        if self.routes and not self.header:
            raise UserError("A/B routes without the header that chooses them",
                            hint="name the header, e.g. --ab-header x-variant")
        if self.header is not None:
            object.__setattr__(self, "header", self.header.lower())

    def versions(self) -> set[int]:
        out = {v for v in (self.canary, self.shadow) if v is not None}
        return out | set(self.routes.values())

    def without_canary(self) -> Traffic:
        return replace(self, canary=None, percent=0.0)


def route(traffic: Traffic, stable: int, header_value: str | None, draw: float) -> int:
    """The version that answers; ``draw`` is uniform in [0, 1)."""
    if header_value is not None and header_value in traffic.routes:
        return traffic.routes[header_value]
    if traffic.canary is not None and draw * 100 < traffic.percent:
        return traffic.canary
    return stable


def mirror(traffic: Traffic, draw: float) -> int | None:
    """The shadow version that also gets this request, if any."""
    if traffic.shadow is not None and draw * 100 < traffic.shadow_percent:
        return traffic.shadow
    return None
