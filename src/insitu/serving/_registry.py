"""Finding the runtime of a flavour (the built-in ones, and any registered with
:func:`~insitu.serving._runtime.register_runtime`), with a clear message when its library is
missing; and importing a flavour's library ahead of time in the warm process."""

from __future__ import annotations

import importlib
import importlib.util

from insitu.errors import UserError
from insitu.serving import _runtimes  # noqa: F401 - registers the built-in runtimes
from insitu.serving._runtime import _REGISTRY, Runtime


def runtime_class(flavor: str, *, what: str = "the model") -> type[Runtime]:
    """The runtime for a flavour; a clear :class:`UserError` if there is none or its
    library is not installed here."""
    if flavor not in _REGISTRY:
        raise UserError(f"{what} has no flavour insitu can serve"
                        + (f" ({flavor!r})" if flavor else " (its object is of no known "
                           "framework)"),
                        hint="register a scikit-learn, XGBoost, LightGBM, PyTorch, "
                             "TorchScript or ONNX model, or an object with a predict "
                             "method (see docs/serving.md)")
    cls = _REGISTRY[flavor]
    if cls.module and importlib.util.find_spec(cls.module) is None:
        raise UserError(f"{what} is a {flavor} model, and the {cls.package} package is not "
                        "installed here", hint=f"pip install {cls.package}")
    return cls


def preload(flavor: str) -> None:
    """Import a flavour's library (in the warm process that replicas fork from)."""
    cls = runtime_class(flavor)
    if cls.module:
        importlib.import_module(cls.module)
    for extra in getattr(cls, "preload_modules", ()):
        try:
            importlib.import_module(extra)
        except ImportError:
            pass
