"""`insitu server --backend ray`: a run submitted to the server executes on a real local Ray
cluster, its steps on the cluster's nodes, with its code package shipped to them by Ray
(the attempt works in Ray's copy of the package, not in the server's folder)."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from remote import build_package, compile_spec, launch, stop, wait_for

from conftest import cli

ray = pytest.importorskip("ray")

from insitu.executor._ray_cluster import LocalRayCluster  # noqa: E402

PIPELINE = '''\
import json
import os

import insitu
from lib import helper


@insitu.step
def where(n: int) -> dict:
    w = {"cwd": os.getcwd(), "helper": helper.__file__, "twice": helper.twice(n),
         "has_pipeline": os.path.exists("pipeline.py")}
    print("WHERE " + json.dumps(w))
    return w


@insitu.step
def total(w: dict) -> int:
    return w["twice"] + 1


@insitu.pipeline
def on_ray(n: int = 4):
    total(where(n))
'''


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalRayCluster]:
    base = tempfile.mkdtemp(prefix="insitu-srv-rt-")  # short: Ray's socket paths are limited
    c = LocalRayCluster(Path(base) / "c")
    try:
        c.up(2, cpus_per_node=1, memory_per_node=2 * 1024**3)
        yield c
    finally:
        c.down()
        left = c.processes()
        shutil.rmtree(base, ignore_errors=True)
        assert not left, f"processes of the test cluster outlived it: {left}"


def test_a_run_submitted_to_a_ray_server_runs_on_the_cluster_with_its_package(
        cluster: LocalRayCluster, tmp_path: Path) -> None:
    home = tmp_path / "home"
    db_url = f"sqlite:///{home / 'server.db'}"
    init = cli(home, "server", "init", "--db", db_url)
    assert init.returncode == 0, init.stderr
    token = init.stdout.strip().splitlines()[-1]
    proc, url = launch(db_url, home, "--backend", "ray", "--address", cluster.address,
                       "--poll", "0.2")
    try:
        root = tmp_path / "proj"
        (root / "lib").mkdir(parents=True)
        (root / "lib" / "__init__.py").write_text("")
        (root / "lib" / "helper.py").write_text("def twice(n):\n    return 2 * n\n")
        (root / "pipeline.py").write_text(PIPELINE)
        spec = compile_spec(tmp_path / "client-home", root / "pipeline.py")
        data, digest = build_package(root)
        shutil.rmtree(root)  # what runs is the package, not this folder
        with httpx.Client(base_url=url, timeout=60,
                          headers={"Authorization": f"Bearer {token}"}) as http:
            r = http.put(f"/api/v1/projects/default/packages/{digest}", content=data,
                         headers={"Content-Type": "application/zip"})
            assert r.status_code == 201, r.text
            r = http.post("/api/v1/projects/default/runs",
                          json={"spec": spec, "package": digest})
            assert r.status_code == 201, r.text
            rid = r.json()["id"]

            def ended() -> dict[str, Any] | None:
                v: dict[str, Any] = http.get(f"/api/v1/projects/default/runs/{rid}").json()
                return v if v["state"] in ("succeeded", "failed", "cancelled") else None

            final = wait_for(ended, 300, f"run {rid} to end", every=0.5)
            assert final["state"] == "succeeded", (final, _engine_log(home, rid))
            assert final["backend"] == "ray"
            assert {t["node"] for t in final["tasks"]} <= {n.name for n in cluster.nodes}
            text = http.get(f"/api/v1/projects/default/runs/{rid}/logs",
                            params={"step": "where"}).json()["text"]
        line = next(x for x in text.splitlines() if x.startswith("WHERE "))
        got = json.loads(line[len("WHERE "):])
        server_copy = home / "packages"
        assert got["twice"] == 8 and got["has_pipeline"], got
        # Ray's copy of the package, which the attempt worked in and imported from
        assert not Path(got["cwd"]).is_relative_to(server_copy), (got, server_copy)
        assert Path(got["helper"]).is_relative_to(got["cwd"]), got
    finally:
        stop(proc)


def _engine_log(home: Path, rid: str) -> str:
    f = home / "engines" / f"{rid}.log"
    return f.read_text()[-4000:] if f.exists() else "(no engine log)"
