"""The records of the scheduler: nodes, GPUs, taints, requests, placements, decisions.

All are frozen, keyword-only dataclasses: values that never change once built. Quantities are
stored in the units the scheduler computes with: CPU in milli-cores, memory in bytes, GPU in
milli-GPU (1000 = one whole GPU).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from insitu._units import parse_cpu, parse_gpu, parse_memory
from insitu.errors import ResourceError
from insitu.scheduler._mig import all_profile_names

EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


@dataclass(frozen=True, kw_only=True)
class Gpu:
    """One GPU: its ``model`` (``"T4"``, ``"A100-80GB"``), memory in bytes, and whether it is in
    MIG mode (then only MIG requests use it, through the profiles its model allows)."""

    model: str
    memory: int = 0
    mig: bool = False


@dataclass(frozen=True, kw_only=True)
class Taint:
    """A node taint ``key=value:effect``; a request must tolerate it to be placed there."""

    key: str
    value: str = ""
    effect: str = "NoSchedule"

    def __str__(self) -> str:
        if self.value:
            return f"{self.key}={self.value}:{self.effect}"
        return f"{self.key}:{self.effect}"

    @classmethod
    def parse(cls, text: str) -> Taint:
        """``"gpu=reserved:NoSchedule"`` or ``"dedicated:NoSchedule"``."""
        body, _, effect = text.partition(":")
        key, _, value = body.partition("=")
        effect = effect or "NoSchedule"
        if not key or effect not in EFFECTS:
            raise ResourceError(f"invalid taint {text!r}",
                                hint='write "key=value:NoSchedule" (effect one of '
                                     f'{", ".join(EFFECTS)})')
        return cls(key=key, value=value, effect=effect)


@dataclass(frozen=True, kw_only=True)
class Toleration:
    """Tolerates taints with ``key`` (and ``value`` when given; any value when ``None``) and
    ``effect`` (any effect when ``None``). ``key=None`` tolerates every taint."""

    key: str | None
    value: str | None = None
    effect: str | None = None

    def tolerates(self, taint: Taint) -> bool:
        if self.key is None:
            return True
        return (self.key == taint.key
                and (self.value is None or self.value == taint.value)
                and (self.effect is None or self.effect == taint.effect))

    @classmethod
    def parse(cls, text: str) -> Toleration:
        """``"gpu=reserved:NoSchedule"``, ``"gpu:NoSchedule"`` (any value), ``"gpu"`` or ``"*"``."""
        if text == "*":
            return cls(key=None)
        body, _, effect = text.partition(":")
        key, eq, value = body.partition("=")
        return cls(key=key, value=value if eq else None, effect=effect or None)


@dataclass(frozen=True, kw_only=True)
class Node:
    """A machine: CPU cores, memory bytes, GPUs, labels, taints, zone, spot, and the dataset shards
    it holds (shard id -> bytes)."""

    name: str
    cpu: float
    memory: int
    gpus: tuple[Gpu, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    zone: str = ""
    spot: bool = False
    shards: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            raise ResourceError("a node needs a name", hint="give Node(name=...)")
        if not self.cpu > 0 or not self.memory > 0:
            raise ResourceError(f"node {self.name!r} needs cpu > 0 and memory > 0",
                                hint="give the node's cores and memory bytes")

    @classmethod
    def build(cls, name: str, *, cpu: float, memory: Any, gpus: int = 0, gpu_model: str = "",
              gpu_memory: Any = 0, **kw: Any) -> Node:
        """A node with ``gpus`` identical GPUs; ``memory`` may be ``"64GiB"``."""
        gmem = parse_memory(gpu_memory, what="gpu_memory") if gpu_memory else 0
        g = tuple(Gpu(model=gpu_model, memory=gmem) for _ in range(gpus))
        return cls(name=name, cpu=float(cpu), memory=parse_memory(memory), gpus=g, **kw)


@dataclass(frozen=True, kw_only=True)
class LinkPrices:
    """Price of moving one GiB of input to a node: from a replica on the same node (free), in the
    same zone, across zones, and from outside the cluster (no replica on any node)."""

    same_zone: float = 1.0
    cross_zone: float = 4.0
    remote: float = 8.0


@dataclass(frozen=True, kw_only=True)
class DataInput:
    """An input of a step: a dataset shard (or artifact) id and its size in bytes."""

    shard: str
    size: int


@dataclass(frozen=True, kw_only=True)
class Request:
    """What one attempt of a step needs.

    ``cpu`` in cores, ``memory`` in bytes (or a string such as ``"4GiB"``), ``gpu`` a whole count
    or a fraction of one GPU (shared, milli-GPU), ``gpu_types`` the allowed GPU models (empty: any),
    ``mig_profile`` a MIG partition instead (``"3g.40gb"``). ``gang`` names a group of
    ``gang_size`` requests placed all-or-nothing. ``restartable`` work may run on spot nodes;
    other work never does. ``spread`` names a set of serving replicas to spread across nodes.
    """

    name: str
    cpu: float = 0.0
    memory: int = 0
    gpu: float = 0.0
    gpu_types: tuple[str, ...] = ()
    mig_profile: str | None = None
    node_selector: Mapping[str, str] = field(default_factory=dict)
    affinity: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()
    priority: int = 0
    queue: str = "default"
    gang: str | None = None
    gang_size: int = 1
    restartable: bool = False
    inputs: tuple[DataInput, ...] = ()
    link: LinkPrices = field(default_factory=LinkPrices)
    spread: str | None = None

    def __post_init__(self) -> None:
        where = f"request {self.name!r}"
        if self.cpu:
            object.__setattr__(self, "cpu", parse_cpu(self.cpu, what=f"cpu of {where}"))
        if isinstance(self.memory, str) or self.memory:
            object.__setattr__(self, "memory",
                               parse_memory(self.memory, what=f"memory of {where}"))
        if self.gpu:
            object.__setattr__(self, "gpu", parse_gpu(self.gpu))
        if isinstance(self.gpu_types, str):
            object.__setattr__(self, "gpu_types", (self.gpu_types,))
        tol = tuple(Toleration.parse(t) if isinstance(t, str) else t for t in self.tolerations)
        object.__setattr__(self, "tolerations", tol)
        if self.mig_profile is not None:
            if self.mig_profile not in all_profile_names():
                raise ResourceError(
                    f"{where}: unknown MIG profile {self.mig_profile!r}",
                    hint=f"use one of {', '.join(sorted(all_profile_names()))}")
            if self.gpu:
                raise ResourceError(f"{where} asks for both gpu={self.gpu} and a MIG profile",
                                    hint="give either gpu=... or mig_profile=..., not both")
        if self.gang_size < 1:
            raise ResourceError(f"{where}: gang_size must be at least 1",
                                hint="give gang_size=N, the number of members of the gang")

    # -- derived quantities, in scheduler units ------------------------------------------------
    @property
    def cpu_milli(self) -> int:
        return round(self.cpu * 1000)

    @property
    def gpu_count(self) -> int:
        """How many GPUs the request touches (1 for a fraction)."""
        if self.gpu <= 0:
            return 0
        return 1 if self.gpu < 1 else int(self.gpu)

    @property
    def gpu_milli(self) -> int:
        """Milli-GPU asked of each GPU touched (1000 for whole GPUs)."""
        if self.gpu <= 0:
            return 0
        return max(1, round(self.gpu * 1000)) if self.gpu < 1 else 1000

    @property
    def total_gpu_milli(self) -> int:
        return self.gpu_count * self.gpu_milli


@dataclass(frozen=True, kw_only=True)
class Placement:
    """Where a request runs: ``node``, the GPU indices on it, the milli-GPU taken on each, and for
    a MIG request the partition (``mig_profile`` starting at memory slice ``mig_start``)."""

    request: str
    node: str
    gpus: tuple[int, ...] = ()
    gpu_milli: int = 0
    cpu_milli: int = 0
    memory: int = 0
    mig_profile: str | None = None
    mig_start: int | None = None
    spread: str | None = None


@dataclass(frozen=True, kw_only=True)
class Decision:
    """The outcome for one request: a ``placement``, or ``reason`` (why it is pending, in plain
    words). ``never`` is true when no node could ever hold it, even empty."""

    request: Request
    placement: Placement | None = None
    reason: str | None = None
    never: bool = False
    preempted: tuple[str, ...] = ()

    @property
    def placed(self) -> bool:
        return self.placement is not None
