"""The deployment files: every Kubernetes manifest under deploy/k8s checked against the
Kubernetes schemas (kubernetes-validate, strict: unknown fields are errors), the KubeRay
RayCluster's pod templates against the PodTemplateSpec schema and its own required fields by
hand (the RayCluster CRD's schema is not bundled with kubernetes-validate), the Dockerfile's
promises, and the Grafana dashboard's queries against the metrics the server exports.

No Kubernetes cluster and no Docker build is exercised here."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"


def manifests() -> list[tuple[str, dict[str, Any]]]:
    import yaml

    out = []
    for f in sorted(K8S.glob("*.yaml")):
        for i, doc in enumerate(yaml.safe_load_all(f.read_text())):
            if doc is not None:
                out.append((f"{f.name}#{i}", doc))
    return out


def test_every_kubernetes_manifest_is_valid() -> None:
    kv = pytest.importorskip("kubernetes_validate")
    docs = manifests()
    kinds = {d["kind"] for _, d in docs}
    assert {"Namespace", "Secret", "Deployment", "Service", "Job", "StatefulSet",
            "RayCluster"} <= kinds
    version = kv.latest_version()
    for where, doc in docs:
        if doc["apiVersion"].startswith("ray.io/"):
            continue  # a CRD: below
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as e:
            raise AssertionError(f"{where}: {e}") from None


def test_the_raycluster_has_what_kuberay_requires() -> None:
    kv = pytest.importorskip("kubernetes_validate")
    version = kv.latest_version()
    rays = [(w, d) for w, d in manifests() if d["kind"] == "RayCluster"]
    assert rays
    for where, rc in rays:
        with pytest.raises(kv.SchemaNotFoundError):  # if this fails, validate it whole
            kv.validate(rc, version, strict=True)
        assert rc["apiVersion"] == "ray.io/v1", where
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", rc["metadata"]["name"])
        spec = rc["spec"]
        groups = [("head", spec["headGroupSpec"])]
        groups += [(g["groupName"], g) for g in spec["workerGroupSpecs"]]
        names = [n for n, _ in groups[1:]]
        assert len(names) == len(set(names)), f"{where}: worker group names repeat"
        for name, g in groups:
            # rayStartParams is a map of strings in the CRD
            assert all(isinstance(v, str) for v in g.get("rayStartParams", {}).values()), name
            if name != "head":
                assert 0 <= g["minReplicas"] <= g["replicas"] <= g["maxReplicas"], name
            tmpl = {"apiVersion": "v1", "kind": "PodTemplate",
                    "metadata": {"name": f"{rc['metadata']['name']}-{name}"},
                    "template": g["template"]}
            try:  # the pod template is a Kubernetes PodTemplateSpec: checked with its schema
                kv.validate(tmpl, version, strict=True)
            except kv.ValidationError as e:
                raise AssertionError(f"{where} group {name}: {e}") from None
            assert g["template"]["spec"]["containers"], name
        head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
        assert 10001 in {p["containerPort"] for p in head["ports"]}  # the Ray client port


def test_the_server_manifests_fit_together() -> None:
    docs = dict(manifests())
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for d in docs.values():
        by_kind.setdefault(d["kind"], []).append(d)
    secret = by_kind["Secret"][0]
    keys = set(secret["stringData"])
    refs = []
    for d in by_kind["Deployment"] + by_kind["Job"] + by_kind["StatefulSet"]:
        for c in d["spec"]["template"]["spec"]["containers"]:
            refs += [e["valueFrom"]["secretKeyRef"] for e in c.get("env", [])
                     if "valueFrom" in e]
    assert refs and all(r["name"] == secret["metadata"]["name"] and r["key"] in keys
                        for r in refs)
    (server,) = [d for d in by_kind["Deployment"] if d["metadata"]["name"] == "insitu-server"]
    pod = server["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    c = pod["containers"][0]
    assert c["readinessProbe"]["httpGet"]["path"] == "/api/v1/health"
    assert c["args"][:4] == ["server", "--host", "0.0.0.0", "--port"]
    (job,) = by_kind["Job"]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][:2] == ["server", "init"]
    svc_names = {s["metadata"]["name"] for s in by_kind["Service"]}
    assert "insitu-postgres" in svc_names and "insitu-server" in svc_names
    assert "@insitu-postgres:5432/" in secret["stringData"]["url"]
    (pg,) = by_kind["StatefulSet"]
    assert pg["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]


def test_the_dockerfile_builds_the_server_as_a_user_with_a_healthcheck() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "FROM python:3.11-slim"
    assert 'RUN pip install ".[server]" && rm -rf /build' in lines
    user = next(ln for ln in lines if ln.startswith("USER "))
    assert not user.split()[1].startswith(("root", "0"))
    assert lines.index(user) > max(i for i, ln in enumerate(lines) if ln.startswith("RUN "))
    assert any(ln.startswith("HEALTHCHECK") for ln in lines) and "/api/v1/health" in text
    assert lines[-2:] == ['ENTRYPOINT ["insitu"]',
                          'CMD ["server", "--host", "0.0.0.0", "--port", "8420"]']


def exported_names(tmp_path: Path) -> set[str]:
    """The sample names a server exports with every family populated (GPU metrics, which
    need NVML and a GPU, by their declared names)."""
    from fastapi.testclient import TestClient
    from prometheus_client.parser import text_string_to_metric_families

    from insitu.executor import GpuInfo, NodeInfo
    from insitu.server._app import create_app
    from insitu.server._domain import initialise
    from insitu.server._metrics import GPU_METRICS
    from insitu.store import RunRecord, TaskRecord, open_store

    store = open_store(f"sqlite:///{tmp_path / 'd.db'}")
    _, token = initialise(store)
    now = time.time()
    store.put(
        RunRecord(id="r1", pipeline="p", state="running", spec={}, params={}, created_at=now,
                  engine_pid=os.getpid(), heartbeat_at=now),
        TaskRecord(run_id="r1", id="a", step_id="a", state="succeeded", node="n", ready_at=now,
                   started_at=now, ended_at=now + 1),
        TaskRecord(run_id="r1", id="b", step_id="b", state="running", node="n", ready_at=now,
                   started_at=now, resources={"cpu": 1, "memory": 1, "gpu": 1}),
        TaskRecord(run_id="r1", id="c", step_id="c", state="pending", ready_at=now))
    node = NodeInfo(name="n", cpu=4, memory=2**30, gpus=(GpuInfo(index=0, model="T4"),))
    app = create_app(store, nodes=lambda: [node], gpu_metrics=False)
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as c:
        c.get("/api/v1/whoami")
        text = c.get("/metrics").text
    store.close()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples} | set(
        GPU_METRICS)


def test_the_dashboard_queries_only_metrics_the_server_exports(tmp_path: Path) -> None:
    dash = json.loads((ROOT / "deploy" / "grafana" / "insitu.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [v["query"]["query"] for v in dash["templating"]["list"]
              if isinstance(v.get("query"), dict)]
    used = {m for e in exprs for m in re.findall(r"\binsitu_[a-z0-9_]+", e)}
    exported = exported_names(tmp_path)
    assert used - exported == set()
    # and every family the server exports is on the dashboard
    families = {re.sub(r"_(bucket|count|sum|total|info|created)$", "", n) for n in exported}
    shown = {re.sub(r"_(bucket|count|sum|total|info|created)$", "", n) for n in used}
    assert families - shown == set()
