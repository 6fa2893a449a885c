"""The runtime contract, and the registry of runtimes by flavour.

A runtime wraps one loaded model object. It is made once per replica process, then called
from that process's single thread: :meth:`Runtime.check` on each decoded request (raises
:class:`~insitu.serving._errors.BadInput` naming what is wrong), :meth:`Runtime.predict` on
one request or on several requests' rows stacked together when :attr:`Runtime.batchable`.
It knows nothing of HTTP; the replica around it knows nothing of any framework.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from insitu.serving._codec import datatype_of
from insitu.serving._errors import BadInput


@dataclass(frozen=True)
class TensorSpec:
    """One input or output as the metadata endpoint lists it (-1: any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


class Runtime:
    """One loaded model. Subclasses set ``flavor``, ``module`` (what they import) and
    ``package`` (what to install), and implement ``predict``."""

    flavor: ClassVar[str] = ""
    module: ClassVar[str] = ""
    package: ClassVar[str] = ""
    platform: ClassVar[str] = ""
    batchable: ClassVar[bool] = True

    def __init__(self, model: Any) -> None:
        self.model = model

    def inputs(self) -> list[TensorSpec]:
        return []

    def outputs(self) -> list[TensorSpec]:
        return []

    def check(self, inputs: dict[str, np.ndarray]) -> None:
        """Raise :class:`BadInput` if the request cannot be given to the model."""

    def predict(self, inputs: dict[str, np.ndarray], outputs: list[str] | None
                ) -> dict[str, np.ndarray]:
        raise NotImplementedError


def single(inputs: dict[str, np.ndarray], flavor: str) -> tuple[str, np.ndarray]:
    if len(inputs) != 1:
        raise BadInput(f"this {flavor} model takes one input; the request has "
                       f"{len(inputs)} ({', '.join(inputs)})",
                       hint="send the features as one tensor of shape [rows, features]")
    return next(iter(inputs.items()))


def check_table(name: str, x: np.ndarray, n_features: int | None, flavor: str,
                allow: tuple[str, ...]) -> None:
    """A [rows, features] tensor of an accepted datatype."""
    dt = datatype_of(x)
    if dt not in allow:
        raise BadInput(f"input {name!r} has datatype {dt}; this {flavor} model takes "
                       f"{', '.join(allow[:3])}...", hint=f"send the data as {allow[0]}")
    if n_features is not None and (x.ndim != 2 or x.shape[1] != n_features):
        raise BadInput(f"input {name!r} has shape {list(x.shape)}; the model expects "
                       f"[-1, {n_features}] (rows of {n_features} features)",
                       hint=f"send shape [rows, {n_features}]")


_REGISTRY: dict[str, type[Runtime]] = {}


def register_runtime(cls: type[Runtime]) -> type[Runtime]:
    """Make ``cls`` the runtime of its flavour (a class decorator)."""
    _REGISTRY[cls.flavor] = cls
    return cls
