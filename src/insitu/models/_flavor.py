"""The flavour of a registered model: which framework its object belongs to.

Recorded on the version when it is registered (``ModelVersionRecord.flavor``), so serving
can choose a runtime without guessing; versions registered before flavours were recorded
are detected when they are loaded. Detection reads the output ref first (its type name, a
file's suffix) and loads the object only when that is not enough (a user's subclass of
``torch.nn.Module`` is named after the user's module). It never raises: an object of no
known framework has the flavour ``""`` (it can still be registered, not served).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

FLAVORS = ("sklearn", "xgboost", "lightgbm", "pytorch", "torchscript", "onnx", "python")

# (flavour, test on a "module.QualName" of the object's class or one of its bases); the
# first match wins, so frameworks that subclass scikit-learn's classes come before it.
_RULES: list[tuple[str, Callable[[str], bool]]] = [
    ("torchscript", lambda n: n.startswith("torch.jit.") or n.startswith("torch._C.Script")),
    ("pytorch", lambda n: n == "torch.nn.modules.module.Module"),
    ("xgboost", lambda n: n.startswith("xgboost.")),
    ("lightgbm", lambda n: n.startswith("lightgbm.")),
    ("onnx", lambda n: n.startswith("onnx.")),
    ("sklearn", lambda n: n.startswith("sklearn.")),
]
_SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".pth": "torchscript",
             ".torchscript": "torchscript"}


def flavor_of_names(names: Iterable[str]) -> str:
    """The flavour given the class names of an object and its bases ("" if none)."""
    names = list(names)
    for flavor, test in _RULES:
        if any(test(n) for n in names):
            return flavor
    return ""


def flavor_of(obj: Any) -> str:
    """The flavour of a loaded object."""
    if isinstance(obj, bytes | bytearray):
        return "onnx" if bytes(obj[:2]) == b"\x08\x07" or b"onnx" in bytes(obj[:64]) else ""
    mro = [f"{c.__module__}.{c.__qualname__}" for c in type(obj).__mro__]
    found = flavor_of_names(mro)
    if found:
        return found
    if callable(getattr(obj, "predict", None)):
        return "python"  # a class of the user's own with load/predict
    return ""


def flavor_of_ref(ref: dict[str, Any], load: Callable[[], Any] | None = None) -> str:
    """The flavour of a stored output ref; ``load`` (returning the object) is called only
    when the ref alone does not tell."""
    if ref.get("kind") != "blob":
        return ""
    ser = ref.get("serializer")
    if ser == "file":
        name = str(ref.get("name") or "")
        return next((f for s, f in _SUFFIXES.items() if name.endswith(s)), "")
    if ser != "pickle":
        return ""  # arrays, frames, JSON: data, not models
    found = flavor_of_names([str(ref.get("type") or "")])
    if found or load is None:
        return found
    try:
        return flavor_of(load())
    except Exception:  # noqa: BLE001 - an object that cannot be loaded here has no flavour
        return ""
