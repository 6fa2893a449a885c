"""Where a rank of a distributed step stands: its rank, world size, device, and the
process group insitu opens for it before the step function runs (and closes after).

The executor starts each rank with the rendezvous environment (``MASTER_ADDR``,
``MASTER_PORT``, ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``); :func:`start` opens the default
process group from it (``gloo`` on CPU, ``nccl`` when the rank has a GPU), with the step's
``collective_timeout``. Outside a distributed step :func:`context` describes a world of one.
"""

from __future__ import annotations

import datetime
import os
import sys
from dataclasses import dataclass
from typing import Any

from insitu.errors import TrainingUnavailable

INSTALL = "pip install 'insitu[train]'"


@dataclass(frozen=True, kw_only=True)
class Context:
    """One rank's view of its gang."""

    rank: int
    local_rank: int
    world_size: int
    local_world_size: int
    device: str          # "cpu", or "cuda:0" (the rank's own GPU)
    backend: str         # "gloo" or "nccl"
    master_addr: str
    master_port: int

    @property
    def is_main(self) -> bool:
        """Rank 0: the rank whose return value is the step's result."""
        return self.rank == 0


@dataclass(frozen=True, kw_only=True)
class Step:
    """What insitu knows of the step a rank runs in (for checkpoints)."""

    run_id: str
    task_id: str
    step_id: str
    attempt: int
    artifacts_url: str


_step: Step | None = None


def _int(name: str, default: int) -> int:
    v = os.environ.get(name)
    return int(v) if v else default


def _gpu() -> bool:
    """Does this rank have a GPU it can use? (GPUs given to it, and, once PyTorch is
    imported, a PyTorch that can use them: a CPU build falls back to gloo.)"""
    if not os.environ.get("CUDA_VISIBLE_DEVICES", "").strip():
        return False
    torch = sys.modules.get("torch")
    return torch is None or bool(torch.cuda.is_available())


def context() -> Context:
    """This rank's :class:`Context`: in a distributed step its rank, world size and device;
    elsewhere a world of one on this process's device."""
    gpu = _gpu()
    return Context(rank=_int("RANK", 0), local_rank=_int("LOCAL_RANK", 0),
                   world_size=_int("WORLD_SIZE", 1),
                   local_world_size=_int("LOCAL_WORLD_SIZE", 1),
                   device="cuda:0" if gpu else "cpu", backend="nccl" if gpu else "gloo",
                   master_addr=os.environ.get("MASTER_ADDR", "127.0.0.1"),
                   master_port=_int("MASTER_PORT", 0))


def require_torch() -> Any:
    """``torch``, or :class:`TrainingUnavailable` saying how to install it."""
    try:
        import torch
    except ImportError:
        raise TrainingUnavailable(
            "a distributed step (workers > 1) needs PyTorch, which is not installed here",
            hint=f"install it: {INSTALL}") from None
    return torch


def check_torch() -> None:
    """:class:`TrainingUnavailable` unless PyTorch could be imported (without importing it)."""
    import importlib.util
    import sys

    missing = sys.modules["torch"] is None if "torch" in sys.modules else \
        importlib.util.find_spec("torch") is None
    if missing:
        raise TrainingUnavailable(
            "a distributed step (workers > 1) needs PyTorch, which is not installed here",
            hint=f"install it: {INSTALL}")


def begin(*, run_id: str, task_id: str, step_id: str, attempt: int, artifacts_url: str
          ) -> None:
    """Called by the worker before the step runs (any step: checkpoints work in all)."""
    global _step
    _step = Step(run_id=run_id, task_id=task_id, step_id=step_id, attempt=attempt,
                 artifacts_url=artifacts_url)


def current_step() -> Step | None:
    return _step


def start() -> None:
    """Open the default process group of this rank (called by the worker)."""
    torch = require_torch()
    import torch.distributed as dist

    ctx = context()
    if ctx.backend == "nccl":
        torch.cuda.set_device(0)
    timeout = float(os.environ.get("INSITU_COLLECTIVE_TIMEOUT") or 300.0)
    dist.init_process_group(backend=ctx.backend, init_method="env://", rank=ctx.rank,
                            world_size=ctx.world_size,
                            timeout=datetime.timedelta(seconds=timeout))


def stop() -> None:
    """Close the process group, if the step left it open."""
    try:
        import torch.distributed as dist
    except ImportError:
        return
    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - a peer already gone must not fail rank 0
            pass
