"""The Open Inference Protocol v2 JSON tensor format (and KServe v1 ``instances``), to and
from NumPy arrays.

A request is ``{"id"?, "parameters"?, "inputs": [{"name", "shape", "datatype", "data",
"parameters"?}], "outputs"?: [{"name"}]}``; ``data`` is row-major, flat or nested.
Every check names the input, what was expected and what came.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from insitu.serving._errors import BadInput

DATATYPES: dict[str, Any] = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
    "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
    "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
    "BYTES": np.object_,
}
_OF_DTYPE = {np.dtype(t).str: n for n, t in DATATYPES.items() if n != "BYTES"}
NUMERIC = tuple(n for n in DATATYPES if n not in ("BOOL", "BYTES"))


def datatype_of(arr: np.ndarray) -> str:
    """The OIP datatype name of an array (strings and objects are BYTES)."""
    return _OF_DTYPE.get(arr.dtype.str, "BYTES")


@dataclass
class Request:
    """One decoded inference request."""

    inputs: dict[str, np.ndarray]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] | None = None
    v1: bool = False

    @property
    def rows(self) -> int:
        first = next(iter(self.inputs.values()))
        return int(first.shape[0]) if first.ndim else 1


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise BadInput(f"the request body is not JSON: {e}",
                       hint="send a JSON object with an 'inputs' list") from None


def decode_v2(body: bytes) -> Request:
    doc = _json(body)
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list) or \
            not doc["inputs"]:
        raise BadInput("the request has no 'inputs' list",
                       hint='send {"inputs": [{"name": ..., "shape": [...], "datatype": '
                            '"FP32", "data": [...]}]}')
    inputs: dict[str, np.ndarray] = {}
    for i, t in enumerate(doc["inputs"]):
        arr = _tensor(t, i)
        name = t["name"]
        if name in inputs:
            raise BadInput(f"input {name!r} is given twice", hint="name each input once")
        inputs[name] = arr
    outputs = None
    if doc.get("outputs") is not None:
        outs = doc["outputs"]
        if not isinstance(outs, list) or not all(isinstance(o, dict) and
                                                 isinstance(o.get("name"), str) for o in outs):
            raise BadInput("'outputs' must be a list of {\"name\": ...} objects")
        outputs = [o["name"] for o in outs]
    params = doc.get("parameters") or {}
    if not isinstance(params, dict):
        raise BadInput("'parameters' must be an object")
    rid = doc.get("id")
    return Request(inputs, None if rid is None else str(rid), params, outputs)


def _tensor(t: Any, i: int) -> np.ndarray:
    if not isinstance(t, dict):
        raise BadInput(f"inputs[{i}] is not an object")
    name = t.get("name")
    if not isinstance(name, str) or not name:
        raise BadInput(f"inputs[{i}] has no name")
    dt = t.get("datatype")
    if dt not in DATATYPES:
        raise BadInput(f"input {name!r} has datatype {dt!r}, which is not one of the "
                       f"protocol's", hint="use one of " + ", ".join(DATATYPES))
    shape = t.get("shape")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise BadInput(f"input {name!r} has shape {shape!r}",
                       hint="give the shape as a list of non-negative integers, e.g. [1, 30]")
    data = t.get("data")
    if data is None:
        raise BadInput(f"input {name!r} has no 'data'")
    want = math.prod(shape)
    try:
        if dt == "BYTES":
            flat = _flatten(data) if isinstance(data, list) else [data]
            arr = np.empty(len(flat), dtype=object)
            arr[:] = flat
        else:
            arr = np.asarray(data, dtype=DATATYPES[dt])
    except (ValueError, TypeError, OverflowError) as e:
        raise BadInput(f"input {name!r}: its data is not {dt}: {e}",
                       hint=f"send {dt} values, or set the datatype to that of the data") \
            from None
    if arr.size != want:
        raise BadInput(f"input {name!r} has shape {shape} ({want} values) but {arr.size} "
                       "values of data", hint="make the shape match the data")
    return arr.reshape(shape)


def _flatten(data: list[Any]) -> list[Any]:
    out: list[Any] = []
    for d in data:
        if isinstance(d, list):
            out.extend(_flatten(d))
        else:
            out.append(d)
    return out


def decode_v1(body: bytes) -> Request:
    doc = _json(body)
    if not isinstance(doc, dict) or not isinstance(doc.get("instances"), list) or \
            not doc["instances"]:
        raise BadInput("the request has no 'instances' list",
                       hint='send {"instances": [[...], ...]} (one list per row)')
    try:
        arr = np.asarray(doc["instances"])
    except ValueError as e:
        raise BadInput(f"'instances' is not a regular array: {e}",
                       hint="give every instance the same length") from None
    if arr.dtype.kind in "U":
        arr = arr.astype(object)
    return Request({"instances": arr}, v1=True)


def _tensor_json(name: str, arr: np.ndarray) -> dict[str, Any]:
    arr = np.asarray(arr)
    dt = datatype_of(arr)
    if dt == "BYTES":
        data: Any = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                     for v in arr.ravel().tolist()]
    else:
        data = np.ascontiguousarray(arr).ravel()
    return {"name": name, "datatype": dt, "shape": list(arr.shape), "data": data}


def encode_v2(model: str, version: str, req: Request, outputs: dict[str, np.ndarray]
              ) -> bytes:
    doc: dict[str, Any] = {"model_name": model, "model_version": version,
                           "outputs": [_tensor_json(n, a) for n, a in outputs.items()]}
    if req.id is not None:
        doc["id"] = req.id
    if req.parameters:
        doc["parameters"] = req.parameters
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


def encode_v1(outputs: dict[str, np.ndarray]) -> bytes:
    first = np.asarray(next(iter(outputs.values())))
    preds = first.tolist() if first.dtype != object else [str(v) for v in first.tolist()]
    return orjson.dumps({"predictions": preds})


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})
