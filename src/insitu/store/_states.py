"""The states of runs, tasks and attempts, and the kinds of an attempt's error.

Each is a :class:`~enum.StrEnum` whose values are the strings stored in the database, so
records read back compare equal to the members (``task.state == TaskState.PENDING``).
Which moves between states are allowed is declared once, in ``insitu.engine._moves``.
"""

from __future__ import annotations

import enum


class RunState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TaskState(enum.StrEnum):
    PENDING = "pending"        # waiting for inputs or resources (or for its retry backoff)
    RUNNING = "running"        # an attempt is running (or, for a map, its items are)
    SUCCEEDED = "succeeded"
    CACHED = "cached"          # succeeded from the cache, without running
    FAILED = "failed"
    SKIPPED = "skipped"        # its condition was false, or an upstream step was skipped
    CANCELLED = "cancelled"
    PRUNED = "pruned"          # a tuning trial stopped early by the tuner; not a failure


class AttemptState(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"          # its error says why; kind "lost" uses up no retry
    LOST = "lost"              # the engine vanished while it ran; uses up no retry
    CANCELLED = "cancelled"
    PRUNED = "pruned"


class ErrorKind(enum.StrEnum):
    """``error["kind"]`` of a failed attempt or task."""

    USER = "user"                    # the step's code raised
    OOM = "oom"
    TIMEOUT = "timeout"
    LOST = "lost"                    # its worker vanished (killed, node gone, engine gone)
    CANCELLED = "cancelled"
    IMPORT = "import"
    SERIALIZATION = "serialization"
    MISSING_INPUT = "missing_input"
    STORAGE = "storage"
    PRUNED = "pruned"
    ITEM_FAILED = "item_failed"      # a map's parent: one of its items failed
    TUNING = "tuning"                # a tuning step gave up


# what the CLI shows for a run whose engine is gone (never stored)
INTERRUPTED = "interrupted"

RUN_TERMINAL = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED})
TASK_DONE = frozenset({TaskState.SUCCEEDED, TaskState.CACHED})
TASK_TERMINAL = frozenset({TaskState.SUCCEEDED, TaskState.CACHED, TaskState.FAILED,
                           TaskState.SKIPPED, TaskState.CANCELLED, TaskState.PRUNED})
ATT_TERMINAL = frozenset(set(AttemptState) - {AttemptState.RUNNING})

__all__ = ["ATT_TERMINAL", "INTERRUPTED", "RUN_TERMINAL", "TASK_DONE", "TASK_TERMINAL",
           "AttemptState", "ErrorKind", "RunState", "TaskState"]
