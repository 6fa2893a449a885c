"""A real ``insitu serve`` process on loopback, checked with the official Triton HTTP client
(Open Inference Protocol v2), the KServe v1 form, and bad input: each one clear error, and
the process stays up."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from served import ROW, Http, ServeProcess, body

import insitu


@pytest.fixture(scope="module")
def server(zoo_home: Path) -> Iterator[ServeProcess]:
    s = ServeProcess(zoo_home, "sk@champion", "--max-body-bytes", "100000")
    s.wait_live()
    yield s
    out, err = s.stop()
    assert "Traceback" not in err, err


def test_prints_the_url_and_a_curl_line(server: ServeProcess) -> None:
    line = server.proc.stdout.readline()  # type: ignore[union-attr]
    assert f"serving sk:1 as sk at {server.url}" in line
    assert "curl" in server.proc.stdout.readline()  # type: ignore[union-attr]


def test_the_triton_client_speaks_to_it(server: ServeProcess, zoo_home: Path) -> None:
    tc = pytest.importorskip("tritonclient.http")
    client = tc.InferenceServerClient(server.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("sk") and client.is_model_ready("sk", "1")
    meta = client.get_model_metadata("sk")
    assert meta["platform"] == "sklearn" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 30]}]
    assert {o["name"] for o in meta["outputs"]} == {"predict", "predict_proba"}
    x = np.array([ROW, [-v for v in ROW]], dtype=np.float64)
    want = insitu.models.load("sk@champion").predict(x)
    for dt, np_dt in [("FP64", np.float64), ("FP32", np.float32), ("FP16", np.float16),
                      ("INT64", np.int64), ("INT32", np.int32), ("INT16", np.int16),
                      ("INT8", np.int8), ("UINT8", np.uint8), ("UINT16", np.uint16),
                      ("UINT32", np.uint32), ("UINT64", np.uint64), ("BOOL", np.bool_)]:
        arr = np.abs(x).astype(np_dt) if dt.startswith("UINT") else x.astype(np_dt)
        inp = tc.InferInput("input-0", list(arr.shape), dt)
        inp.set_data_from_numpy(arr, binary_data=False)
        outs = [tc.InferRequestedOutput("predict", binary_data=False),
                tc.InferRequestedOutput("predict_proba", binary_data=False)]
        res = client.infer("sk", [inp], outputs=outs, request_id="r1")
        assert res.get_response()["model_version"] == "1", dt
        assert res.get_response()["id"] == "r1"
        got = res.as_numpy("predict")
        assert got.shape == (2,), dt
        if dt in ("FP64", "FP32"):
            assert (got == want).all()
            assert res.as_numpy("predict_proba").shape == (2, 2)
    with pytest.raises(tc.InferenceServerException, match="no model named 'nope'"):
        client.get_model_metadata("nope")
    client.close()


def test_nested_data_parameters_and_versions(server: ServeProcess) -> None:
    h = Http(server.url)
    nested = {"id": "a", "parameters": {"tag": "x"},
              "inputs": [{"name": "input-0", "shape": [2, 30], "datatype": "FP64",
                          "data": [ROW, ROW]}]}
    status, headers, doc = h.post("/v2/models/sk/versions/1/infer", json.dumps(nested).encode())
    assert status == 200 and headers["x-insitu-version"] == "sk:1"
    assert doc["id"] == "a" and doc["parameters"] == {"tag": "x"}
    assert doc["outputs"][0]["shape"] == [2]
    # another registered version, asked for by number, is loaded on demand
    status, headers, doc = h.post("/v2/models/sk/versions/2/infer", body())
    assert status == 200 and doc["model_version"] == "2" and headers["x-insitu-version"] == \
        "sk:2"
    status, _, doc = h.post("/v1/models/sk:predict",
                            json.dumps({"instances": [ROW, ROW]}).encode())
    assert status == 200 and len(doc["predictions"]) == 2
    h.close()


def test_bad_input_is_one_clear_error_and_the_process_stays_up(server: ServeProcess) -> None:
    h = Http(server.url)
    cases = [
        ("/v2/models/nope/infer", body(), 404, "no model named 'nope' is served here"),
        ("/v2/models/sk/versions/9/infer", body(), 404, "has no version 9"),
        ("/v2/models/sk/infer", b"{not json", 400, "not JSON"),
        ("/v2/models/sk/infer", b"{}", 400, "no 'inputs' list"),
        ("/v2/models/sk/infer", json.dumps({"inputs": [{"name": "x", "shape": [1, 29],
                                                        "datatype": "FP64",
                                                        "data": ROW[:29]}]}).encode(),
         400, "has shape [1, 29]; the model expects [-1, 30]"),
        ("/v2/models/sk/infer", json.dumps({"inputs": [{"name": "x", "shape": [1, 30],
                                                        "datatype": "FP64",
                                                        "data": ROW[:29]}]}).encode(),
         400, "has shape [1, 30] (30 values) but 29 values"),
        ("/v2/models/sk/infer", json.dumps({"inputs": [{"name": "x", "shape": [1, 30],
                                                        "datatype": "BYTES",
                                                        "data": ["a"] * 30}]}).encode(),
         400, "has datatype BYTES; this sklearn model takes"),
        ("/v2/models/sk/infer", json.dumps({"inputs": [{"name": "x", "shape": [1, 30],
                                                        "datatype": "FP64",
                                                        "data": ["a"] * 30}]}).encode(),
         400, "its data is not FP64"),
        ("/v2/models/sk/infer", json.dumps({"inputs": [{"name": "x", "shape": [1, 30],
                                                        "datatype": "FP99",
                                                        "data": ROW}]}).encode(),
         400, "datatype 'FP99', which is not one of the protocol's"),
        ("/v2/models/sk/infer", json.dumps({"inputs": [{"name": "x", "shape": [1, 30],
                                                        "datatype": "FP64", "data": ROW}],
                                            "outputs": [{"name": "nope"}]}).encode(),
         400, "has no output 'nope'"),
        ("/v2/models/sk/infer", body(rows=500), 413, "over this endpoint's limit of 100000"),
        ("/v1/models/sk:predict", json.dumps({"instances": [[1, 2], [1]]}).encode(),
         400, "'instances' is not a regular array"),
    ]
    for path, data, status, text in cases:
        got, _, doc = h.post(path, data)
        assert (got, text in doc.get("error", "")) == (status, True), (path, doc)
        assert h.get("/v2/health/live")[0] == 200
    status, _, doc = h.get("/v2/models/nope")
    assert status == 404 and "no model named 'nope'" in doc["error"]
    status, _, doc = h.post("/v2/models/sk/infer", body())
    assert status == 200
    _, _, metrics = h.get("/metrics")
    assert 'insitu_serving_errors_total{code="400",endpoint="sk",model="sk",version="1"}' \
        in metrics
    assert "insitu_serving_request_seconds_bucket" in metrics
    assert 'insitu_serving_replicas{endpoint="sk",model="sk",version="1"} 1.0' in metrics
    h.close()
