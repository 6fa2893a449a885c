"""The one exception tree of insitu.

Every error insitu raises on purpose derives from :class:`InsituError`. The tree
separates *your* mistakes (:class:`UserError`: a bad pipeline, parameter, name
or request), failures of *your code* inside a step (:class:`StepFailed`), and
faults of insitu itself or its environment (:class:`InternalError`,
:class:`StoreError`)::

    InsituError
    ├── UserError                    a mistake the user can fix; message says how
    │   ├── PipelineLoadError        the pipeline file cannot be imported/found
    │   ├── ValidationError          the pipeline is invalid (lists every problem)
    │   ├── ParameterError           unknown, missing or mistyped parameter
    │   ├── ResourceError (ValueError)  bad or unsatisfiable resource request
    │   ├── SerializationError       a step output cannot be serialised
    │   ├── TrainingUnavailable (ImportError)  a distributed step without PyTorch
    │   ├── CheckpointError          a checkpoint of another step, or a state that does not fit
    │   ├── StepOutsidePipeline      a step was called outside a pipeline
    │   ├── Conflict                 clashes with what exists (a run a model needs)
    │   ├── NotFound (KeyError)      unknown run, step, artifact, model
    │   ├── Unauthenticated          no valid token (missing, malformed, expired, revoked)
    │   └── PermissionDenied         the token's role does not allow the request
    ├── StepFailed                   a step ended failed (its error is attached)
    ├── StoreError                   the database cannot be used (corrupt, foreign, too new)
    ├── Unavailable                  it exists and cannot answer now (an endpoint starting)
    └── InternalError                a bug in insitu: please report it

:class:`Cancelled` derives from ``BaseException`` so that user code cannot swallow it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


class InsituError(Exception):
    """Root of every error insitu raises on purpose.

    ``hint`` is the fix, when one is known; ``str(err)`` contains it.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\n  fix: {hint}")


class UserError(InsituError):
    """A mistake in what the user asked for; the message names what, where, and the fix."""


class PipelineLoadError(UserError):
    """The pipeline file cannot be imported, or the named pipeline is not in it."""


@dataclass(frozen=True, kw_only=True)
class Problem:
    """One problem found while validating a pipeline."""

    message: str
    file: str | None = None
    line: int | None = None
    step: str | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}" if self.line else self.file
            where += ": "
        step = f"step '{self.step}': " if self.step else ""
        fix = f" (fix: {self.hint})" if self.hint else ""
        return f"{where}{step}{self.message}{fix}"


class ValidationError(UserError):
    """The pipeline is invalid. ``problems`` lists every problem found, not just the first."""

    def __init__(self, problems: list[Problem], *, pipeline: str | None = None) -> None:
        self.problems = list(problems)
        name = f"pipeline '{pipeline}'" if pipeline else "the pipeline"
        n = len(self.problems)
        lines = [f"{name} is invalid ({n} problem{'s' if n != 1 else ''}):"]
        lines += [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


class ParameterError(UserError, ValueError):
    """An unknown, missing or mistyped pipeline parameter."""


class ResourceError(UserError, ValueError):
    """A resource request that is malformed or that no node can satisfy."""


class TrainingUnavailable(UserError, ImportError):
    """A distributed step (``workers`` > 1) where PyTorch is not installed."""


class CheckpointError(UserError):
    """A checkpoint that cannot be loaded here: another step's, or a state that does not fit."""


class SerializationError(UserError):
    """A step's output (or input) cannot be serialised into the artifact store."""


class StepOutsidePipeline(UserError):
    """A step was called outside a ``@pipeline`` function."""


class Conflict(UserError):
    """The request clashes with what exists (e.g. deleting a run a model version needs)."""


class NotFound(UserError, KeyError):
    """An unknown run, step, attempt or artifact."""

    def __str__(self) -> str:  # KeyError would quote the message
        return Exception.__str__(self)


def not_found(what: str, name: str, known: Iterable[str], *, where: str | None = None,
              otherwise: str | None = None) -> NotFound:
    """A :class:`NotFound` for an unknown ``name`` that suggests the closest known one."""
    import difflib

    names = sorted(k for k in known if "[" not in k)
    close = difflib.get_close_matches(name, names, n=1)
    message = f"{where} has no {what} {name!r}" if where else f"no {what} named {name!r}"
    hint = (f"did you mean {close[0]!r}?" if close else
            otherwise or f"{what}s: {', '.join(names) or 'none'}")
    return NotFound(message, hint=hint)


class TooLarge(UserError):
    """Something sent is over a size limit (``size`` and ``limit`` in bytes)."""

    def __init__(self, message: str, *, size: int, limit: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.size = size
        self.limit = limit


class Unauthenticated(UserError):
    """The request carries no valid credentials: no token, or one that is malformed, expired
    or revoked."""


class PermissionDenied(UserError):
    """The caller is known but its role does not allow the request."""


class StepFailed(InsituError):
    """A step ended in failure. ``step`` names it and ``error`` holds its classified cause."""

    def __init__(self, message: str, *, step: str, error: dict | None = None,
                 hint: str | None = None) -> None:
        self.step = step
        self.error = error or {}
        super().__init__(message, hint=hint)


class StoreError(InsituError):
    """The metadata database cannot be used: corrupted, not insitu's, or from a newer insitu."""


class Unavailable(InsituError):
    """What was asked for exists and cannot answer now (an endpoint waiting, starting or
    restarting); asking again later may succeed."""


class InternalError(InsituError):
    """A fault inside insitu itself. Please report it with the run id."""


class Cancelled(BaseException):  # noqa: N818 - a signal, not an error
    """Raised to stop work on cancellation; a ``BaseException`` so user code cannot swallow it."""


__all__ = [
    "Cancelled",
    "CheckpointError",
    "Conflict",
    "InsituError",
    "InternalError",
    "NotFound",
    "ParameterError",
    "PermissionDenied",
    "PipelineLoadError",
    "Problem",
    "ResourceError",
    "SerializationError",
    "StepFailed",
    "TrainingUnavailable",
    "StepOutsidePipeline",
    "StoreError",
    "TooLarge",
    "Unauthenticated",
    "Unavailable",
    "UserError",
    "ValidationError",
    "not_found",
]
