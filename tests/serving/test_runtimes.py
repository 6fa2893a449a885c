"""Each runtime on a small real model registered from a pipeline step: served answers equal
the model's own, the flavour was recorded at registration, and a flavour that cannot be
served (no runtime, or its library missing) is refused before anything starts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from served import ROW, Http

import insitu
from insitu.errors import UserError
from insitu.serving import EndpointSpec, Server


def _direct(name: str, x: np.ndarray) -> np.ndarray:
    obj = insitu.models.load(f"{name}@champion")
    if name in ("sk", "xgb", "lgb"):
        return np.asarray(obj.predict(x))
    if name == "custom":
        obj.load()
        return obj.postprocess(obj.predict(obj.preprocess(x)))["doubled"]
    import torch

    if name == "ts":
        obj = torch.jit.load(str(obj))
    if name == "onnx":
        import onnxruntime

        sess = onnxruntime.InferenceSession(str(obj), providers=["CPUExecutionProvider"])
        return np.asarray(sess.run(["probabilities"], {"X": x})[0])
    with torch.no_grad():
        return obj(torch.from_numpy(x)).numpy()


FLAVORS = {"sk": ("sklearn", "FP64", "predict"), "xgb": ("xgboost", "FP64", "predict"),
           "lgb": ("lightgbm", "FP64", "predict"), "torch": ("pytorch", "FP32", "output-0"),
           "ts": ("torchscript", "FP32", "output-0"),
           "onnx": ("onnx", "FP32", "probabilities"), "custom": ("python", "FP64", "doubled")}


@pytest.mark.parametrize("name", list(FLAVORS))
def test_each_runtime_serves_its_model(name: str, served_home: Path) -> None:
    flavor, dt, output = FLAVORS[name]
    assert insitu.models.get_version(f"{name}@champion").flavor == flavor
    x = np.array([ROW, [-v for v in ROW]], dtype=np.float32 if dt == "FP32" else np.float64)
    with Server(EndpointSpec(model=f"{name}@champion")) as s:
        h = Http(s.url)
        req = {"inputs": [{"name": "input-0", "shape": [2, 30], "datatype": dt,
                           "data": x.ravel().tolist()}], "outputs": [{"name": output}]}
        status, headers, doc = h.post(f"/v2/models/{name}/infer", json.dumps(req).encode())
        assert status == 200, doc
        assert headers["x-insitu-version"] == f"{name}:1"
        out = doc["outputs"][0]
        got = np.asarray(out["data"]).reshape(out["shape"])
        np.testing.assert_allclose(got, _direct(name, x), rtol=1e-5)
        status, _, meta = h.get(f"/v2/models/{name}")
        assert status == 200 and meta["parameters"]["flavor"] == flavor
        if flavor in ("pytorch", "torchscript", "onnx"):  # datatypes are checked
            bad = {"inputs": [{"name": "input-0", "shape": [1, 30], "datatype": "FP64",
                               "data": ROW}]}
            status, _, doc = h.post(f"/v2/models/{name}/infer", json.dumps(bad).encode())
            assert status == 400 and "has datatype FP64" in doc["error"] and \
                "FP32" in doc["error"], doc
        h.close()


def test_a_flavour_with_no_runtime_or_library_is_refused(served_home: Path) -> None:
    with pytest.raises(UserError, match="model data:1 has no flavour insitu can serve"):
        Server(EndpointSpec(model="data@champion"))
    from insitu.serving._registry import runtime_class
    from insitu.serving._runtime import Runtime, register_runtime

    @register_runtime
    class Missing(Runtime):  # a runtime whose library is not installed here
        flavor = "catboost-test"
        module = "catboost_not_installed_here"
        package = "catboost"

    with pytest.raises(UserError, match="is a catboost-test model, and the catboost package "
                                        "is not installed here") as e:
        runtime_class("catboost-test", what="model cb:1")
    assert e.value.hint == "pip install catboost"


def test_a_request_larger_than_one_read_of_the_replica_is_answered(served_home: Path) -> None:
    """20,000 rows (about 12 MB of JSON): the replica receives it over many reads."""
    rows = 20_000
    x = np.tile(np.array(ROW), (rows, 1))
    with Server(EndpointSpec(model="sk@champion")) as s:
        h = Http(s.url)
        req = {"inputs": [{"name": "input-0", "shape": [rows, 30], "datatype": "FP64",
                           "data": x.ravel().tolist()}]}
        status, _, doc = h.post("/v2/models/sk/infer", json.dumps(req).encode())
        assert status == 200, doc
        assert doc["outputs"][0]["shape"] == [rows]
        np.testing.assert_array_equal(doc["outputs"][0]["data"], _direct("sk", x))
        h.close()
