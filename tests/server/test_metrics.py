"""``/metrics`` of a real server: steps, queues, step times, allocations and engine
heartbeats read from the database at each scrape; GPU metrics only where NVML sees GPUs;
request metrics merged across worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import Server, _free_port, cli
from insitu.store import RunRecord, TaskRecord, open_store
from pg_fixture import databases

SERVER_DBS = databases("postgresql")  # INSITU_TEST_ALL_DBS=1: both


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample: (name, sorted labels) -> value."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def nvml_sees_gpus() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
        return bool(pynvml.nvmlDeviceGetCount())
    except Exception:  # noqa: BLE001 - no library, no driver, no device
        return False


def test_metrics_read_steps_queues_times_allocations_and_engines(server: Server) -> None:
    p = f"m-{uuid.uuid4().hex[:8]}"
    now = float(int(time.time()))
    store = open_store(server.db_url)
    store.put(
        RunRecord(id=f"{p}-1", pipeline="p", state="running", spec={}, params={},
                  created_at=now, project=p, engine_pid=os.getpid(), heartbeat_at=now),
        RunRecord(id=f"{p}-2", pipeline="p", state="succeeded", spec={}, params={},
                  created_at=now, project=p),
        TaskRecord(run_id=f"{p}-1", id="fit", step_id="fit", state="running", node="n1",
                   ready_at=now - 10, started_at=now - 4,
                   resources={"cpu": 4.0, "memory": 3 * 2**30, "gpu": 2.0, "gpu_type": "H100"}),
        TaskRecord(run_id=f"{p}-1", id="eval", step_id="eval", state="pending",
                   ready_at=now - 1),
        TaskRecord(run_id=f"{p}-2", id="prep", step_id="prep", state="succeeded", node="n1",
                   ready_at=now - 100, started_at=now - 99, ended_at=now - 57))
    store.close()
    r = server.admin.get("/metrics")
    assert r.status_code == 200
    m = scrape(r.text)
    proj = (("project", p),)
    assert m["insitu_steps", (("project", p), ("state", "running"))] == 1
    assert m["insitu_steps", (("project", p), ("state", "pending"))] == 1
    assert m["insitu_queue_depth", proj] == 1
    ok = (("project", p), ("state", "succeeded"))
    assert m["insitu_step_duration_seconds_count", ok] == 1
    assert m["insitu_step_duration_seconds_sum", ok] == pytest.approx(42.0, abs=0.01)
    assert m["insitu_step_duration_seconds_bucket", (("le", "30.0"), *ok)] == 0
    assert m["insitu_step_duration_seconds_bucket", (("le", "60.0"), *ok)] == 1
    assert m["insitu_step_queue_wait_seconds_count", proj] == 2  # 6 s and 1 s
    assert m["insitu_step_queue_wait_seconds_bucket", (("le", "1.0"), *proj)] == 1
    assert m["insitu_step_queue_wait_seconds_sum", proj] == pytest.approx(7.0, abs=0.01)
    assert m["insitu_node_allocated_cpu_cores", (("node", "n1"),)] >= 4.0
    assert m["insitu_project_allocated_cpu_cores", proj] == 4.0
    assert m["insitu_project_allocated_memory_bytes", proj] == 3 * 2**30
    assert m["insitu_project_allocated_gpus", (("gpu_type", "H100"), *proj)] == 2.0
    assert m["insitu_engines", (("project", p), ("status", "live"))] == 1
    assert 0 <= m["insitu_engine_heartbeat_age_seconds", proj] < 600
    # this server knows no node inventory: capacity is absent, not zero
    # `insitu server` on the local backend reports this machine's inventory
    assert m["insitu_node_capacity_cpu_cores", (("node", "local"),)] >= 1


def test_gpu_metrics_only_where_nvml_sees_gpus(server: Server) -> None:
    names = {name for name, _ in scrape(server.admin.get("/metrics").text)}
    gpu = {n for n in names if n.startswith("insitu_gpu_")}
    if nvml_sees_gpus():
        assert gpu == {"insitu_gpu_utilization_ratio", "insitu_gpu_memory_used_bytes",
                       "insitu_gpu_memory_total_bytes"}
    else:  # e.g. this machine: never a faked zero
        assert gpu == set()


def test_gpu_collector_without_nvidia_ml_py(monkeypatch: pytest.MonkeyPatch) -> None:
    from insitu.server._metrics import GpuCollector

    monkeypatch.setitem(sys.modules, "pynvml", None)  # as if nvidia-ml-py were not installed
    c = GpuCollector()
    assert c.nvml is None and "not installed" in c.reason
    assert list(c.collect()) == []


def test_gpu_collector_without_a_driver() -> None:
    pytest.importorskip("pynvml")
    if nvml_sees_gpus():
        pytest.skip("this machine has NVIDIA GPUs")
    from insitu.server._metrics import GpuCollector

    c = GpuCollector()  # the real NVML: no library or driver here
    assert c.nvml is None and c.reason
    assert list(c.collect()) == []


def test_node_capacity_from_the_backends_inventory(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from insitu.executor import local_node
    from insitu.server._app import create_app
    from insitu.server._domain import initialise

    monkeypatch.setenv("INSITU_NODE_CPUS", "8")
    monkeypatch.setenv("INSITU_NODE_GPUS", "A100:2")
    store = open_store(f"sqlite:///{tmp_path / 'm.db'}")
    _, token = initialise(store)
    now = time.time()
    store.put(RunRecord(id="r1", pipeline="p", state="running", spec={}, params={},
                        created_at=now, engine_pid=os.getpid(), heartbeat_at=now),
              TaskRecord(run_id="r1", id="t", step_id="t", state="running", node="local",
                         started_at=now, resources={"cpu": 1.5, "memory": 2**30, "gpu": 1.0}))
    app = create_app(store, nodes=lambda: [local_node()], gpu_metrics=False)
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as c:
        m = scrape(c.get("/metrics").text)
    store.close()
    local = (("node", "local"),)
    assert m["insitu_node_capacity_cpu_cores", local] == 8
    assert m["insitu_node_capacity_gpus", (("gpu_type", "A100"), *local)] == 2
    assert m["insitu_node_allocated_cpu_cores", local] == 1.5
    # a request for "any" GPU on a node of one GPU model counts as that model
    assert m["insitu_node_allocated_gpus", (("gpu_type", "A100"), *local)] == 1.0


def test_workers_serve_the_api_and_share_request_metrics(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'w.db'}"
    init = cli(tmp_path, "server", "init", "--db", db)
    assert init.returncode == 0, init.stderr
    token = init.stdout.strip().splitlines()[-1]
    port = _free_port()
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "insitu", "server", "--db", db, "--port",
                             str(port), "--workers", "2"], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "INSITU_HOME": str(tmp_path)})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if httpx.get(f"{url}/api/v1/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.2)
        headers = {"Authorization": f"Bearer {token}"}
        for _ in range(20):  # new connections: the kernel spreads them over the workers
            with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
                assert c.get("/api/v1/whoami").json()["user"] == "admin"
        key = ("insitu_api_requests_total",
               (("method", "GET"), ("route", "/api/v1/whoami"), ("status", "200")))
        for _ in range(10):  # whichever worker answers shows every worker's requests
            with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
                r = c.get("/metrics")
            assert scrape(r.text)[key] == 20
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()
    assert (tmp_path / "server.log").read_text().count("Started server process") == 2
