"""The pure parts, each rule alone: the tensor codec (every datatype, flat and nested data),
batching that splits rows back to their requests, the autoscaler's decisions, and traffic
routing."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from insitu.errors import UserError
from insitu.serving import Autoscaling, Traffic
from insitu.serving._autoscale import desired
from insitu.serving._batching import model_boundary, predict_many
from insitu.serving._codec import DATATYPES, decode_v2, encode_v2
from insitu.serving._errors import BadInput, ModelFailed
from insitu.serving._runtimes import PythonRuntime
from insitu.serving._traffic import mirror, route


@pytest.mark.parametrize("dt", list(DATATYPES))
def test_every_datatype_round_trips(dt: str) -> None:
    data = ["a", "b", "c", "d", "e", "f"] if dt == "BYTES" else \
        [True, False, True, True, False, False] if dt == "BOOL" else [0, 1, 2, 3, 4, 5]
    for payload in (data, [data[:3], data[3:]]):  # flat, nested
        req = decode_v2(json.dumps({"inputs": [{"name": "x", "shape": [2, 3], "datatype": dt,
                                                "data": payload}]}).encode())
        x = req.inputs["x"]
        assert x.shape == (2, 3)
        doc = json.loads(encode_v2("m", "1", req, {"y": x}))
        out = doc["outputs"][0]
        assert (out["datatype"], out["shape"], out["data"]) == (dt, [2, 3], data)


def test_codec_refusals_name_the_input() -> None:
    def err(doc: object) -> str:
        with pytest.raises(BadInput) as e:
            decode_v2(json.dumps(doc).encode())
        return str(e.value)

    assert "no 'inputs' list" in err({"inputs": []})
    assert "inputs[0] has no name" in err({"inputs": [{"shape": [1], "datatype": "FP32",
                                                       "data": [1]}]})
    assert "input 'x' has shape [-1]" in err({"inputs": [{"name": "x", "shape": [-1],
                                                          "datatype": "FP32", "data": [1]}]})
    assert "input 'x' is given twice" in err({"inputs": [
        {"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}] * 2})
    assert "its data is not UINT8" in err({"inputs": [{"name": "x", "shape": [1],
                                                       "datatype": "UINT8", "data": [-1]}]})


class _Rows:
    batchable = True
    calls: list[int] = []

    def predict(self, x: np.ndarray) -> np.ndarray:
        self.calls.append(len(x))
        if (x < 0).any():
            raise ValueError("negative")
        return x.sum(axis=1)


def test_batching_stacks_rows_and_splits_answers() -> None:
    rt = PythonRuntime(_Rows())
    reqs = [decode_v2(json.dumps({"inputs": [{"name": "x", "shape": [n, 2],
                                              "datatype": "FP64",
                                              "data": [[i, 1]] * n}]}).encode())
            for i, n in [(1, 1), (2, 2), (3, 1)]]
    got = predict_many(rt, reqs, model_boundary)
    assert _Rows.calls == [4]  # one call for the three requests
    assert [(list(r["output-0"]), size) for r, size in got] == \
        [([2.0], 3), ([3.0, 3.0], 3), ([4.0], 3)]
    # one bad request: the batch fails, so each is answered alone
    _Rows.calls.clear()
    reqs[1].inputs["x"] = -reqs[1].inputs["x"]
    got = predict_many(rt, reqs, model_boundary)
    assert isinstance(got[1][0], ModelFailed) and "raised ValueError: negative" in \
        got[1][0].message
    assert not isinstance(got[0][0], BaseException) and not isinstance(got[2][0],
                                                                        BaseException)


def test_autoscaling_rules() -> None:
    p = Autoscaling(min_replicas=0, max_replicas=4, target_concurrency=8, idle_seconds=60,
                    scale_down_seconds=30)
    assert desired(p, current=0, in_flight=0, idle_for=61, since_scale_up=100) == 0
    assert desired(p, current=1, in_flight=0, idle_for=59, since_scale_up=100) == 1
    assert desired(p, current=1, in_flight=20, idle_for=0, since_scale_up=100) == 3
    assert desired(p, current=1, in_flight=500, idle_for=0, since_scale_up=100) == 4
    assert desired(p, current=3, in_flight=1, idle_for=0, since_scale_up=10) == 3  # holds
    assert desired(p, current=3, in_flight=1, idle_for=0, since_scale_up=31) == 1
    with pytest.raises(UserError, match="0 <= min <= max"):
        Autoscaling(min_replicas=3, max_replicas=2)


def test_traffic_rules() -> None:
    t = Traffic(canary=4, percent=25, shadow=5, shadow_percent=10, header="X-V",
                routes={"b": 6})
    assert t.header == "x-v" and t.versions() == {4, 5, 6}
    assert route(t, 3, "b", 0.0) == 6
    assert route(t, 3, None, 0.2) == 4 and route(t, 3, None, 0.3) == 3
    assert mirror(t, 0.05) == 5 and mirror(t, 0.5) is None
    rng = random.Random(0)
    share = sum(route(t, 3, None, rng.random()) == 4 for _ in range(10_000)) / 10_000
    assert 0.23 < share < 0.27
    for bad in (dict(canary=4, percent=101), dict(canary=4, percent=float("nan")),
                dict(percent=5), dict(routes={"a": 1})):
        with pytest.raises(UserError):
            Traffic(**bad)  # type: ignore[arg-type]


def test_the_public_names_are_exactly_these() -> None:
    import insitu.serving

    assert sorted(insitu.serving.__all__) == [
        "Autoscaling", "Batching", "Endpoint", "EndpointSpec", "PayloadLogging", "Resources",
        "Server", "Traffic", "read_payloads"]
    for name in insitu.serving.__all__:
        assert hasattr(insitu.serving, name)
