"""The built-in runtimes: scikit-learn, XGBoost, LightGBM, PyTorch (eager and TorchScript),
ONNX Runtime, and a class of the user's own (``load``, ``predict``, optional
``preprocess``/``postprocess``). Framework imports happen inside the methods, so this module
imports nothing heavy."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from insitu.serving._codec import NUMERIC, datatype_of
from insitu.serving._errors import BadInput
from insitu.serving._runtime import (
    Runtime,
    TensorSpec,
    check_table,
    register_runtime,
    single,
)

_TABLE = (*NUMERIC, "BOOL")


@register_runtime
class SklearnRuntime(Runtime):
    """Estimators with ``predict`` (and ``predict_proba``, selected by asking for the output
    ``predict_proba``); one input of shape [rows, features]."""

    flavor = "sklearn"
    module = "sklearn"
    package = "scikit-learn"
    platform = "sklearn"
    preload_modules: tuple[str, ...] = (
        "sklearn.linear_model", "sklearn.ensemble", "sklearn.pipeline", "sklearn.preprocessing",
        "sklearn.tree", "sklearn.svm", "sklearn.neighbors")

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        import warnings

        # fitted on a DataFrame, asked with an array: the columns are positional
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        n = getattr(model, "n_features_in_", None)
        self.n_features: int | None = int(n) if n is not None else None
        self.methods = [m for m in ("predict", "predict_proba")
                        if callable(getattr(model, m, None))]

    def inputs(self) -> list[TensorSpec]:
        return [TensorSpec("input-0", "FP64", (-1, self.n_features or -1))]

    def outputs(self) -> list[TensorSpec]:
        classes = getattr(self.model, "classes_", None)
        label = datatype_of(np.asarray(classes)) if classes is not None else "FP64"
        return [TensorSpec(m, label, (-1,)) if m == "predict" else
                TensorSpec(m, "FP64", (-1, len(classes) if classes is not None else -1))
                for m in self.methods]

    def check(self, inputs: dict[str, np.ndarray]) -> None:
        name, x = single(inputs, self.flavor)
        if x.ndim == 1 and self.n_features and x.shape[0] == self.n_features:
            inputs[name] = x = x.reshape(1, -1)
        check_table(name, x, self.n_features, self.flavor, _TABLE)

    def predict(self, inputs: dict[str, np.ndarray], outputs: list[str] | None
                ) -> dict[str, np.ndarray]:
        x = next(iter(inputs.values()))
        out = {}
        for m in outputs or self.methods[:1]:
            if m not in self.methods:
                raise BadInput(f"this model has no output {m!r}",
                               hint=f"ask for one of {', '.join(self.methods)}")
            out[m] = np.asarray(getattr(self.model, m)(x))
        return out


@register_runtime
class XGBoostRuntime(SklearnRuntime):
    """XGBoost's scikit-learn estimators, or a ``Booster`` (predicted through a DMatrix)."""

    flavor = "xgboost"
    module = "xgboost"
    package = "xgboost"
    platform = "xgboost"
    preload_modules = ()

    def __init__(self, model: Any) -> None:
        import xgboost

        self.booster = isinstance(model, xgboost.Booster)
        super().__init__(model)
        if self.booster:
            self.n_features = int(model.num_features())
            self.methods = ["predict"]

    def predict(self, inputs: dict[str, np.ndarray], outputs: list[str] | None
                ) -> dict[str, np.ndarray]:
        if not self.booster:
            return super().predict(inputs, outputs)
        import xgboost

        x = next(iter(inputs.values()))
        return {"predict": np.asarray(self.model.predict(xgboost.DMatrix(x)))}


@register_runtime
class LightGBMRuntime(SklearnRuntime):
    """LightGBM's scikit-learn estimators, or a ``Booster``."""

    flavor = "lightgbm"
    module = "lightgbm"
    package = "lightgbm"
    platform = "lightgbm"
    preload_modules = ()

    def __init__(self, model: Any) -> None:
        import lightgbm

        booster = isinstance(model, lightgbm.Booster)
        super().__init__(model)
        if booster:
            self.n_features = int(model.num_feature())
            self.methods = ["predict"]


_TORCH_TYPES = {"torch.float32": "FP32", "torch.float64": "FP64", "torch.float16": "FP16",
                "torch.int64": "INT64", "torch.int32": "INT32"}


@register_runtime
class TorchRuntime(Runtime):
    """An eager ``torch.nn.Module``: inputs are passed positionally, in the request's order,
    as tensors; floating inputs must match the weights' datatype."""

    flavor = "pytorch"
    module = "torch"
    package = "torch"
    platform = "pytorch_torchscript"

    def __init__(self, model: Any) -> None:
        import torch

        torch.set_num_threads(int(os.environ.get("INSITU_SERVE_THREADS", "1")))
        super().__init__(self._load(model))
        self.model.eval()
        p = next(iter(self.model.parameters()), None)
        self.datatype = _TORCH_TYPES.get(str(p.dtype), "FP32") if p is not None else "FP32"
        first = next((m for m in self.model.modules() if hasattr(m, "in_features")), None)
        self.n_features: int | None = int(first.in_features) if first is not None else None

    def _load(self, model: Any) -> Any:
        return model

    def inputs(self) -> list[TensorSpec]:
        return [TensorSpec("input-0", self.datatype, (-1, self.n_features or -1))]

    def outputs(self) -> list[TensorSpec]:
        return [TensorSpec("output-0", self.datatype, (-1, -1))]

    def check(self, inputs: dict[str, np.ndarray]) -> None:
        for name, x in inputs.items():
            dt = datatype_of(x)
            if dt.startswith("FP") and dt != self.datatype:
                raise BadInput(f"input {name!r} has datatype {dt}; this model's weights are "
                               f"{self.datatype}", hint=f"send {self.datatype}")
            if dt == "BYTES":
                raise BadInput(f"input {name!r} has datatype BYTES; a torch model takes "
                               "numbers", hint=f"send {self.datatype}")
            if len(inputs) == 1 and self.n_features and x.shape[-1:] != (self.n_features,):
                raise BadInput(f"input {name!r} has shape {list(x.shape)}; the model expects "
                               f"[-1, {self.n_features}]",
                               hint=f"send shape [rows, {self.n_features}]")

    def predict(self, inputs: dict[str, np.ndarray], outputs: list[str] | None
                ) -> dict[str, np.ndarray]:
        import torch

        with torch.inference_mode():
            out = self.model(*[torch.from_numpy(np.ascontiguousarray(a))
                               for a in inputs.values()])
        if isinstance(out, dict):
            items = list(out.items())
        elif isinstance(out, list | tuple):
            items = [(f"output-{i}", o) for i, o in enumerate(out)]
        else:
            items = [("output-0", out)]
        got = {str(k): v.detach().cpu().numpy() for k, v in items}
        return {k: v for k, v in got.items() if outputs is None or k in outputs}


@register_runtime
class TorchScriptRuntime(TorchRuntime):
    """A TorchScript module, given as the module or as a file saved by ``torch.jit.save``."""

    flavor = "torchscript"

    def _load(self, model: Any) -> Any:
        import torch

        if isinstance(model, str | os.PathLike):
            return torch.jit.load(str(model), map_location="cpu")
        return model


_ONNX_TYPES = {"tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(float16)": "FP16",
               "tensor(int64)": "INT64", "tensor(int32)": "INT32", "tensor(int16)": "INT16",
               "tensor(int8)": "INT8", "tensor(uint8)": "UINT8", "tensor(bool)": "BOOL",
               "tensor(string)": "BYTES", "tensor(uint16)": "UINT16",
               "tensor(uint32)": "UINT32", "tensor(uint64)": "UINT64"}


@register_runtime
class OnnxRuntime(Runtime):
    """An ONNX model (a ``.onnx`` file, its bytes or an ``onnx.ModelProto``) in ONNX Runtime
    on the CPU; inputs by name (one input may have any name), datatypes and ranks checked."""

    flavor = "onnx"
    module = "onnxruntime"
    package = "onnxruntime"
    platform = "onnxruntime_onnx"

    def __init__(self, model: Any) -> None:
        import onnxruntime as ort

        if isinstance(model, str | os.PathLike):
            src: Any = str(model)
        elif isinstance(model, bytes | bytearray):
            src = bytes(model)
        else:
            src = model.SerializeToString()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(os.environ.get("INSITU_SERVE_THREADS", "1"))
        opts.inter_op_num_threads = 1
        super().__init__(ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"]))
        self._in = [TensorSpec(i.name, _ONNX_TYPES.get(i.type, "BYTES"),
                               tuple(d if isinstance(d, int) else -1 for d in i.shape))
                    for i in self.model.get_inputs()]
        self._out = [TensorSpec(o.name, _ONNX_TYPES.get(o.type, "BYTES"),
                                tuple(d if isinstance(d, int) else -1 for d in (o.shape or [])))
                     for o in self.model.get_outputs()]

    def inputs(self) -> list[TensorSpec]:
        return self._in

    def outputs(self) -> list[TensorSpec]:
        return self._out

    def check(self, inputs: dict[str, np.ndarray]) -> None:
        if len(self._in) == 1 and len(inputs) == 1:
            (name, x), = inputs.items()
            if name != self._in[0].name:
                inputs.pop(name)
                inputs[self._in[0].name] = x
        missing = [s.name for s in self._in if s.name not in inputs]
        if missing:
            raise BadInput(f"the request lacks the input(s) {', '.join(missing)}",
                           hint="inputs: " + ", ".join(s.name for s in self._in))
        for s in self._in:
            x = inputs[s.name]
            dt = datatype_of(x)
            if dt != s.datatype:
                raise BadInput(f"input {s.name!r} has datatype {dt}; the model expects "
                               f"{s.datatype}", hint=f"send {s.datatype}")
            if x.ndim != len(s.shape) or any(w not in (-1, g)
                                             for w, g in zip(s.shape, x.shape, strict=True)):
                raise BadInput(f"input {s.name!r} has shape {list(x.shape)}; the model "
                               f"expects {list(s.shape)}", hint="-1 is any size")

    def predict(self, inputs: dict[str, np.ndarray], outputs: list[str] | None
                ) -> dict[str, np.ndarray]:
        names = outputs or [o.name for o in self._out]
        unknown = [n for n in names if n not in {o.name for o in self._out}]
        if unknown:
            raise BadInput(f"this model has no output {unknown[0]!r}",
                           hint="outputs: " + ", ".join(o.name for o in self._out))
        got = self.model.run(names, {s.name: inputs[s.name] for s in self._in})
        return {n: np.asarray(v) for n, v in zip(names, got, strict=True)}


@register_runtime
class PythonRuntime(Runtime):
    """An object of the user's own class: ``load()`` (optional, called once per replica),
    ``predict(x)``, optional ``preprocess(x)`` and ``postprocess(y)``. ``x`` is the one input
    array, or a dict of arrays by name when there are several; ``predict`` may return an
    array or a dict of arrays. Batched only if the class sets ``batchable = True``."""

    flavor = "python"
    module = ""
    package = ""
    platform = "python"
    batchable = False

    def __init__(self, model: Any) -> None:
        if isinstance(model, Path):
            raise BadInput("a file is not a Python model")
        super().__init__(model)
        if callable(getattr(model, "load", None)):
            model.load()
        self.batchable = bool(getattr(model, "batchable", False))  # type: ignore[misc]

    def predict(self, inputs: dict[str, np.ndarray], outputs: list[str] | None
                ) -> dict[str, np.ndarray]:
        m = self.model
        x: Any = next(iter(inputs.values())) if len(inputs) == 1 else inputs
        if callable(getattr(m, "preprocess", None)):
            x = m.preprocess(x)
        y = m.predict(x)
        if callable(getattr(m, "postprocess", None)):
            y = m.postprocess(y)
        got = {str(k): np.asarray(v) for k, v in y.items()} if isinstance(y, dict) else \
            {"output-0": np.asarray(y)}
        return {k: v for k, v in got.items() if outputs is None or k in outputs}
