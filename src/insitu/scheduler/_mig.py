"""MIG (Multi-Instance GPU) profiles and the placements the hardware allows.

An A100/H100 is cut into 8 memory slices (7 compute slices). A profile occupies a fixed number of
memory slices and may only start at the offsets NVIDIA's placement table allows; two instances on
one GPU may not overlap. We track each MIG-mode GPU as an 8-bit mask of used memory slices.
"""

from __future__ import annotations

from dataclasses import dataclass

from insitu.errors import ResourceError


@dataclass(frozen=True, kw_only=True)
class MigProfile:
    """One MIG profile: ``name`` (``"3g.40gb"``), compute slices, memory slices, allowed starts."""

    name: str
    compute: int
    slices: int
    starts: tuple[int, ...]

    @property
    def milli(self) -> int:
        """The share of the GPU this profile takes, in milli-GPU (compute slices out of 7)."""
        return self.compute * 1000 // 7


def _profiles(mem_unit_gb: int) -> dict[str, MigProfile]:
    u = mem_unit_gb
    table = [
        (f"1g.{u}gb", 1, 1, (0, 1, 2, 3, 4, 5, 6)),
        (f"1g.{2 * u}gb", 1, 2, (0, 2, 4, 6)),
        (f"2g.{2 * u}gb", 2, 2, (0, 2, 4)),
        (f"3g.{4 * u}gb", 3, 4, (0, 4)),
        (f"4g.{4 * u}gb", 4, 4, (0,)),
        (f"7g.{8 * u}gb", 7, 8, (0,)),
    ]
    return {n: MigProfile(name=n, compute=c, slices=s, starts=st) for n, c, s, st in table}


#: GPU models that support MIG, by model name, with their profiles.
MIG_MODELS: dict[str, dict[str, MigProfile]] = {
    "A100-40GB": _profiles(5),
    "A100-80GB": _profiles(10),
    "H100-80GB": _profiles(10),
    "H100": _profiles(10),
    "A100": _profiles(10),
}


def mig_profile(model: str, name: str) -> MigProfile:
    """The profile ``name`` on GPU ``model``; :class:`ResourceError` if the pair is not valid."""
    table = MIG_MODELS.get(model)
    if table is None:
        raise ResourceError(
            f"GPU model {model!r} does not support MIG",
            hint=f"use one of {', '.join(sorted(MIG_MODELS))} for MIG partitions",
        )
    prof = table.get(name)
    if prof is None:
        raise ResourceError(
            f"unknown MIG profile {name!r} for {model}",
            hint=f"use one of {', '.join(table)}",
        )
    return prof


def all_profile_names() -> set[str]:
    return {p for t in MIG_MODELS.values() for p in t}


def find_start(used_mask: int, prof: MigProfile) -> int | None:
    """The first allowed start where ``prof`` fits in a GPU whose used slices are ``used_mask``."""
    bits = (1 << prof.slices) - 1
    for s in prof.starts:
        if not used_mask & (bits << s):
            return s
    return None


def slot_mask(prof: MigProfile, start: int) -> int:
    return ((1 << prof.slices) - 1) << start
