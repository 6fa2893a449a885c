"""Distributed training inside a step: the rank's context and checkpoints.

Owns: :func:`context` (rank, local rank, world size, device, backend of a rank of a
distributed step), the process group opened for each rank (``_context``), and checkpoints
in the artifact store (``_checkpoint``). May import errors, artifacts; PyTorch only lazily,
with an install hint when it is missing. The gang itself (placing, starting, stopping,
restarting the ranks) belongs to the engine and the executors; see docs/training.md.
"""

from insitu.train._checkpoint import (
    Checkpoint,
    delete_checkpoints,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from insitu.train._context import Context, context

__all__ = ["Checkpoint", "Context", "context", "delete_checkpoints", "list_checkpoints",
           "load_checkpoint", "save_checkpoint"]
