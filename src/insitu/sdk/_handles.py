"""Handles: what a step call or a parameter stands for while a pipeline is traced.

A handle never holds a value; it compiles to a *ref* in the PipelineSpec
(``{"output": step_id, "path": [...]}`` or ``{"param": name}``). Comparing a
handle builds a :class:`Condition` for :func:`insitu.If`.
"""

from __future__ import annotations

from typing import Any

_OPS = ("==", "!=", "<", "<=", ">", ">=")


class Handle:
    """Base of every handle: indexable and comparable, never truthy."""

    __slots__ = ("_path",)

    def __init__(self, path: tuple[str | int, ...] = ()) -> None:
        self._path = path

    def _ref(self) -> dict[str, Any]:
        raise NotImplementedError

    def _with_path(self, path: tuple[str | int, ...]) -> Handle:
        raise NotImplementedError

    def __getitem__(self, key: str | int) -> Handle:
        if not isinstance(key, str | int) or isinstance(key, bool):
            raise TypeError(f"a handle can be indexed with a string or an int, not {key!r}")
        return self._with_path((*self._path, key))

    def __bool__(self) -> bool:
        from insitu.errors import UserError

        raise UserError(
            f"{self!r} has no value while the pipeline is being defined, so it cannot be used "
            "in a Python `if`, `and`, `or` or `not`",
            hint="branch with `with insitu.If(handle == value): ...` "
                 "(and insitu.Elif / insitu.Else)",
        )

    def __iter__(self) -> Any:
        from insitu.errors import UserError

        raise UserError(
            f"{self!r} has no value while the pipeline is being defined, so it cannot be iterated",
            hint="fan out over it with `step.map(handle)`",
        )

    def __hash__(self) -> int:
        return id(self)

    def _cmp(self, op: str, other: object) -> Condition:
        return Condition({"op": op, "left": self._ref(), "right": to_ref(other)})

    def __eq__(self, other: object) -> Condition:  # type: ignore[override]
        return self._cmp("==", other)

    def __ne__(self, other: object) -> Condition:  # type: ignore[override]
        return self._cmp("!=", other)

    def __lt__(self, other: object) -> Condition:
        return self._cmp("<", other)

    def __le__(self, other: object) -> Condition:
        return self._cmp("<=", other)

    def __gt__(self, other: object) -> Condition:
        return self._cmp(">", other)

    def __ge__(self, other: object) -> Condition:
        return self._cmp(">=", other)

    def is_in(self, values: object) -> Condition:
        """Condition: this value is one of ``values``."""
        return self._cmp("in", values)


class Output(Handle):
    """The future output of one step call (or, for a ``.map``, the list of item outputs)."""

    __slots__ = ("step_id", "mapped")

    def __init__(self, step_id: str, path: tuple[str | int, ...] = (), *,
                 mapped: bool = False) -> None:
        super().__init__(path)
        self.step_id = step_id
        self.mapped = mapped

    def _ref(self) -> dict[str, Any]:
        ref: dict[str, Any] = {"output": self.step_id}
        if self._path:
            ref["path"] = list(self._path)
        return ref

    def _with_path(self, path: tuple[str | int, ...]) -> Handle:
        return Output(self.step_id, path, mapped=self.mapped and not path)

    def __repr__(self) -> str:
        p = "".join(f"[{k!r}]" for k in self._path)
        return f"<output of step '{self.step_id}'{p}>"


class Param(Handle):
    """A pipeline parameter that has no value while the pipeline is traced.

    The pipeline body normally sees each parameter's value (the one the run uses). Only
    when a spec is compiled without a value for a required parameter (``insitu compile
    FILE`` with no ``-p``) does the body get this placeholder: it can be passed to steps
    and resource options, and compared in ``insitu.If``, but Python cannot compute with it.
    """

    __slots__ = ("name", "type")

    def __init__(self, name: str, path: tuple[str | int, ...] = (), *,
                 type: str = "any") -> None:  # noqa: A002 - the parameter's declared type
        super().__init__(path)
        self.name = name
        self.type = type

    def _no_value(self, use: str) -> Exception:
        from insitu.errors import UserError

        return UserError(
            f"parameter '{self.name}' has no value while the pipeline is compiled, so it "
            f"cannot be used {use}",
            hint=f"give it a value: `insitu compile FILE -p {self.name}=VALUE` (`insitu run` "
                 f"and insitu.run(pipeline, {self.name}=...) always do)")

    def __bool__(self) -> bool:
        raise self._no_value("in a Python `if`, `and`, `or` or `not`")

    def __iter__(self) -> Any:
        raise self._no_value("as a Python sequence")

    def __index__(self) -> int:
        raise self._no_value("as a Python int (range(), an index)")

    def __int__(self) -> int:
        raise self._no_value("as a Python int")

    def __float__(self) -> float:
        raise self._no_value("as a Python number")

    def __len__(self) -> int:
        raise self._no_value("with len()")

    def __str__(self) -> str:
        raise self._no_value("as a string")

    def __format__(self, spec: str) -> str:
        raise self._no_value("in a string")

    def _ref(self) -> dict[str, Any]:
        ref: dict[str, Any] = {"param": self.name}
        if self._path:
            ref["path"] = list(self._path)
        return ref

    def _with_path(self, path: tuple[str | int, ...]) -> Handle:
        return Param(self.name, path, type=self.type)

    def __repr__(self) -> str:
        return f"<parameter '{self.name}'>"


class RunStatus(Handle):
    """The final status of the run, given to the exit handler's ``status`` parameter."""

    __slots__ = ()

    def _ref(self) -> dict[str, Any]:
        return {"status": True}

    def __repr__(self) -> str:
        return "<run status>"


class Condition:
    """A boolean expression over handles, evaluated by the engine at run time."""

    __slots__ = ("expr",)

    def __init__(self, expr: dict[str, Any]) -> None:
        self.expr = expr

    def __and__(self, other: Condition) -> Condition:
        return Condition({"op": "and", "args": [self.expr, as_condition(other).expr]})

    def __invert__(self) -> Condition:
        return Condition({"op": "not", "args": [self.expr]})

    def __bool__(self) -> bool:
        from insitu.errors import UserError

        raise UserError("a condition on step outputs cannot be used in a Python `if`",
                        hint="use `with insitu.If(condition): ...`")

    def __repr__(self) -> str:
        return f"<condition {self.expr}>"


def as_condition(value: object) -> Condition:
    if isinstance(value, Condition):
        return value
    if isinstance(value, Handle):
        return Condition({"op": "truthy", "left": value._ref()})
    if isinstance(value, bool):  # a condition on parameter values, already known
        return Condition({"op": "truthy", "left": {"const": value}})
    from insitu.errors import UserError

    raise UserError(f"insitu.If needs a condition on a step output or a parameter, got {value!r}",
                    hint="write e.g. `insitu.If(score > 0.9)` or `insitu.If(flag)`")


class NotJSONable(ValueError):
    """Raised by :func:`to_ref` for a constant that cannot go into a JSON spec."""


def to_ref(value: object) -> dict[str, Any]:
    """Compile a Python value (constants, handles, lists/dicts of them) to a spec ref."""
    if isinstance(value, Handle):
        return value._ref()
    if isinstance(value, list | tuple):
        if any(_contains_handle(v) for v in value):
            return {"list": [to_ref(v) for v in value]}
        return {"const": _const(value)}
    if isinstance(value, dict):
        if any(_contains_handle(v) for v in value.values()):
            if not all(isinstance(k, str) for k in value):
                raise NotJSONable("a dict passed to a step must have string keys")
            return {"dict": {k: to_ref(v) for k, v in value.items()}}
        return {"const": _const(value)}
    return {"const": _const(value)}


def _contains_handle(value: object) -> bool:
    if isinstance(value, Handle):
        return True
    if isinstance(value, list | tuple):
        return any(_contains_handle(v) for v in value)
    if isinstance(value, dict):
        return any(_contains_handle(v) for v in value.values())
    return False


def _const(value: object) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise NotJSONable(f"{value!r} is not representable in JSON")
        return value
    if isinstance(value, list | tuple):
        return [_const(v) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise NotJSONable("dict keys must be strings")
        return {k: _const(v) for k, v in value.items()}
    raise NotJSONable(f"a constant of type {type(value).__name__} cannot be written into the "
                      "pipeline spec")


def refs_in(ref: dict[str, Any]) -> list[dict[str, Any]]:
    """Every leaf ref (output/param/status/const) inside ``ref``."""
    if "list" in ref:
        return [r for sub in ref["list"] for r in refs_in(sub)]
    if "dict" in ref:
        return [r for sub in ref["dict"].values() for r in refs_in(sub)]
    return [ref]


def refs_in_condition(cond: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not cond:
        return []
    out: list[dict[str, Any]] = []
    for key in ("left", "right"):
        if key in cond:
            out += refs_in(cond[key])
    for sub in cond.get("args", []):
        out += refs_in_condition(sub)
    return out
