"""The Ray executor on a 3-node local Ray cluster, started and stopped by a fixture."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from insitu.errors import UserError  # noqa: E402
from insitu.executor._ray import DATA_DIR_LABEL, RayExecutor, RayUnreachable  # noqa: E402
from insitu.executor._ray_cluster import SPOT_LABEL, ZONE_LABEL, LocalRayCluster  # noqa: E402
from insitu.store import DataReadRecord  # noqa: E402
from insitu.testing.executor_conformance import (  # noqa: E402
    ExecutorConformance,
    request,
    wait_all,
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalRayCluster]:
    """A 3-node cluster, started with a stray Ray token in the home directory (one another
    Ray left behind): the local cluster must not depend on the user's own Ray state."""
    base = tempfile.mkdtemp(prefix="insitu-rt-")  # short: Ray's socket paths are limited
    home = Path(base) / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text("a-token-left-by-another-ray-0123456789abcdef")
    c = LocalRayCluster(Path(base) / "c")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        try:
            c.up(3, cpus_per_node=1, memory_per_node=2 * 1024**3)
            yield c
        finally:
            ray.shutdown()
            c.down()
            left = c.processes()
            shutil.rmtree(base, ignore_errors=True)
            assert not left, f"processes of the test cluster outlived it: {left}"


class TestRayExecutor(ExecutorConformance):
    @pytest.fixture
    def executor(self, cluster: LocalRayCluster) -> Iterator[RayExecutor]:
        ex = RayExecutor(cluster.address)
        yield ex
        ex.close()


def test_nodes_are_the_clusters_with_their_labels(cluster: LocalRayCluster) -> None:
    nodes = {n.name: n for n in RayExecutor(cluster.address).nodes()}
    assert sorted(nodes) == ["node-0", "node-1", "node-2"]
    for planned in cluster.nodes:
        n = nodes[planned.name]
        assert n.cpu == 1 and n.memory == 2 * 1024**3
        assert n.labels[ZONE_LABEL] == planned.zone
        assert n.labels[SPOT_LABEL] == str(planned.spot).lower()
        assert n.labels[DATA_DIR_LABEL] == planned.data_dir and Path(planned.data_dir).is_dir()
    assert nodes["node-2"].labels[SPOT_LABEL] == "true"
    assert nodes["node-0"].labels[ZONE_LABEL] != nodes["node-1"].labels[ZONE_LABEL]


def test_an_attempt_runs_on_the_node_it_is_given(cluster: LocalRayCluster,
                                                 tmp_path: Path) -> None:
    ex = RayExecutor(cluster.address)
    try:
        for name in ("node-1", "node-2"):
            ex.launch(request(tmp_path, ex, name, "environment",
                              {"names": ["INSITU_NODE", "INSITU_DATA_DIR"]}, node=name))
        got = wait_all(ex, {"node-1", "node-2"})
        for name in ("node-1", "node-2"):
            assert got[name].node == name
            value = got[name].result["output"]["value"]  # type: ignore[index]
            assert value["INSITU_NODE"] == name
            assert value["INSITU_DATA_DIR"].endswith(f"/data/{name}")
    finally:
        ex.close()


def test_close_stops_the_attempts_process(cluster: LocalRayCluster, tmp_path: Path) -> None:
    """The conformance close test checks pids only through ``pid_of``, which Ray has not."""
    import time

    import psutil

    ex = RayExecutor(cluster.address)
    ex.launch(request(tmp_path, ex, "c", "sleep", {"seconds": 60}, node="node-1"))
    child = None
    deadline = time.time() + 30
    while child is None and time.time() < deadline:
        ex.poll(0.2)
        child = next((p for p in psutil.process_iter(["cmdline"])
                      if "req.pkl" in " ".join(p.info["cmdline"] or [])), None)
    assert child is not None, "the attempt's process never started"
    ex.close()
    child.wait(timeout=15)


def test_cluster_status_command_lists_the_nodes(cluster: LocalRayCluster) -> None:
    from click.testing import CliRunner

    from insitu.cli._cluster import cluster as cluster_cli

    out = CliRunner().invoke(cluster_cli, ["status", "--base-dir", str(cluster.base)])
    assert out.exit_code == 0, out.output
    assert cluster.address and cluster.address in out.output
    assert all(f"node-{i}" in out.output for i in range(3)) and "zone-b" in out.output


def test_unreachable_cluster_names_the_address() -> None:
    with pytest.raises(RayUnreachable) as e:
        RayExecutor("127.0.0.1:1")
    assert isinstance(e.value, UserError)
    assert "127.0.0.1:1" in str(e.value) and "insitu cluster up" in str(e.value)


def test_no_address_says_how_to_give_one(monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    from insitu.executor import _ray_cluster

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(_ray_cluster, "default_base_dir", lambda: tmp_path)  # no local cluster
    with pytest.raises(RayUnreachable, match="no Ray cluster address"):
        RayExecutor(None)


def test_a_dead_ray_worker_is_reported_as_lost(cluster: LocalRayCluster, tmp_path: Path) -> None:
    import os
    import signal
    import time

    import psutil

    ex = RayExecutor(cluster.address)
    try:
        ex.launch(request(tmp_path, ex, "k", "sleep", {"seconds": 30}, node="node-1"))
        child = None
        deadline = time.time() + 30
        while child is None and time.time() < deadline:
            assert not ex.poll(0.2)
            child = next((p for p in psutil.process_iter(["cmdline"])
                          if "req.pkl" in " ".join(p.info["cmdline"] or [])), None)
        assert child is not None, "the attempt's process never started"
        os.kill(child.ppid(), signal.SIGKILL)  # the Ray worker running the task
        got = wait_all(ex, {"k"}, timeout=30)["k"]
        assert got.result is None and got.exit_code is None
        assert not got.cancelled and not got.timed_out
        assert "the Ray task was lost" in (tmp_path / "logs" / "k.err").read_text()
        child.wait(timeout=10)  # and the attempt's process died with its worker
    finally:
        ex.close()


def test_a_pipeline_runs_through_the_engine_on_ray(cluster: LocalRayCluster, home: Path) -> None:
    import sys

    from insitu._results import Run, _open
    from insitu.engine import Engine

    sys.path.insert(0, str(Path(__file__).parents[1] / "pipelines"))
    import basic

    store, cfg = _open(None)
    ex = RayExecutor(cluster.address)
    try:
        engine = Engine(store, ex, config=cfg)
        rec = engine.execute(engine.submit(basic.fanout.compile(), {"n": 5}).id)
    finally:
        ex.close()
    run = Run(rec, store, cfg)
    assert rec.state == "succeeded", [(t.id, t.error) for t in run.tasks()]
    assert run.output("square") == [0, 1, 4, 9, 16] and run.output("total") == 30
    assert {a.node for a in run.attempts()} <= {"node-0", "node-1", "node-2"}


def test_steps_run_on_the_nodes_that_hold_their_shards(cluster: LocalRayCluster,
                                                      home: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Four shards on each of two nodes, node-0's first in the map: when node-1 has room
    first, it takes its own shards, not node-0's; with a slow link (1 Mbit/s) no shard is
    worth moving, so every read is local."""
    import sys

    import insitu
    from insitu._results import Run, _open
    from insitu.engine import Engine

    sys.path.insert(0, str(Path(__file__).parents[1] / "pipelines"))
    import scan

    monkeypatch.setenv("INSITU_LINK_MBIT", "0.01")  # moving a shard: ~2 min, never worth it
    ex = RayExecutor(cluster.address)
    try:
        dirs = {n.name: Path(n.labels["insitu.dev/data-dir"]) for n in ex.nodes()}
        holder = {}
        # node-2 is the spot node, where this (non-restartable) step may not run
        for node, shards in (("node-0", range(4)), ("node-1", range(4, 8))):
            folder = dirs[node] / "events"
            folder.mkdir(parents=True, exist_ok=True)
            for i in shards:
                (folder / f"part-{i}.txt").write_text("".join(f"e{j}\n" for j in range(
                    20_000 + i)))
                holder[f"part-{i}.txt"] = node
            insitu.datasets.add("events", [str(folder / "part-*.txt")], node=node)
        store, cfg = _open(None)
        engine = Engine(store, ex, config=cfg)
        rec = engine.execute(engine.submit(scan.scan_events.compile(), {}).id)
    finally:
        ex.close()
    run = Run(rec, store, cfg)
    assert rec.state == "succeeded", [(t.id, t.error) for t in run.tasks()]
    shards = insitu.dataset("events").shards()
    for i, shard in enumerate(shards):
        (att,) = run.attempts(f"scan[{i}]")
        assert att.node == holder[shard["shard"]], (shard["shard"], att.node)
    reads = store.select(DataReadRecord, run_id=rec.id)
    assert {(r.via, r.local) for r in reads} == {("replica", True)}
    assert sum(r.bytes for r in reads) == sum(s["size"] for s in shards)


def test_a_shard_on_a_node_the_step_may_not_use_moves_through_its_transfer_service(
        cluster: LocalRayCluster, home: Path) -> None:
    """node-2 is a spot node: a step without retries may not run there, so its shard moves,
    through node-2's transfer service, to the node that runs it, and is cached there."""
    import sys

    import insitu
    from insitu._results import _open
    from insitu.engine import Engine

    sys.path.insert(0, str(Path(__file__).parents[1] / "pipelines"))
    import scan

    ex = RayExecutor(cluster.address)
    try:
        nodes = {n.name: n for n in ex.nodes()}
        assert all(n.labels.get("insitu.dev/transfer", "").startswith("http://")
                   for n in nodes.values())
        folder = Path(nodes["node-2"].labels["insitu.dev/data-dir"]) / "spot-events"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "part-0.txt").write_text("".join(f"e{j}\n" for j in range(1000)))
        insitu.datasets.add("events", [str(folder / "part-0.txt")], node="node-2")
        store, cfg = _open(None)
        engine = Engine(store, ex, config=cfg)
        rec = engine.execute(engine.submit(scan.scan_events.compile(), {}).id)
        again = engine.execute(engine.submit(scan.scan_events.compile(), {}, no_cache=True).id)
    finally:
        ex.close()
    assert rec.state == "succeeded" and again.state == "succeeded"
    (read,) = store.select(DataReadRecord, run_id=rec.id)
    assert (read.via, read.source, read.local) == ("transfer", "node-2", False)
    assert read.node in ("node-0", "node-1")
    assert read.bytes == (folder / "part-0.txt").stat().st_size
    (read2,) = store.select(DataReadRecord, run_id=again.id)
    # the copy made the reader a holder: the next run goes there and reads it locally
    assert (read2.via, read2.node, read2.local) == ("cache", read.node, True)


def test_a_lost_node_is_reported_as_a_lost_worker(cluster: LocalRayCluster,
                                                  tmp_path: Path) -> None:
    """Last in this file: it takes node-2 away from the module's cluster."""
    import time

    ex = RayExecutor(cluster.address)
    try:
        ex.launch(request(tmp_path, ex, "n", "sleep", {"seconds": 60}, node="node-2"))
        time.sleep(3)
        raylet = next(p for p in cluster.processes() if p.name() == "raylet"
                      and any("insitu.node/node-2," in a for a in p.cmdline()))
        raylet.kill()
        got = wait_all(ex, {"n"}, timeout=60)["n"]
        assert got.result is None and got.exit_code is None and got.node == "node-2"
        assert not got.cancelled and not got.timed_out
        assert "NodeDiedError" in (tmp_path / "logs" / "n.err").read_text()
    finally:
        ex.close()


def test_a_node_lost_mid_step_is_retried_on_another_node(cluster: LocalRayCluster,
                                                         home: Path, tmp_path: Path) -> None:
    """Last in this file: it takes a worker node away from the module's cluster."""
    import sys
    import threading
    import time

    from insitu._results import Run, _open
    from insitu.engine import Engine

    sys.path.insert(0, str(Path(__file__).parents[1] / "pipelines"))
    import ray_nodes

    store, cfg = _open(None)
    ex = RayExecutor(cluster.address)
    marks = tmp_path / "marks"
    marks.mkdir()
    killed: list[str] = []

    def kill_a_worker_node() -> None:
        deadline = time.time() + 60
        while time.time() < deadline and not killed:
            for f in marks.iterdir():
                node = f.read_text()
                if node in ("node-1", "node-2"):
                    raylet = next(p for p in cluster.processes() if p.name() == "raylet"
                                  and any(f"insitu.node/{node}," in a for a in p.cmdline()))
                    raylet.kill()
                    killed.append(node)
                    return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_a_worker_node)
    killer.start()
    try:
        engine = Engine(store, ex, config=cfg)
        rec = engine.execute(engine.submit(ray_nodes.spread.compile(),
                                           {"folder": str(marks)}).id)
    finally:
        killer.join()
        ex.close()
    run = Run(rec, store, cfg)
    assert killed, "no step landed on a worker node"
    assert rec.state == "succeeded", [(t.id, t.error) for t in run.tasks()]
    atts = run.attempts()
    lost = [a for a in atts if a.state == "failed" and (a.error or {}).get("kind") == "lost"]
    assert lost and all(a.node == killed[0] for a in lost)
    for a in lost:
        retry = next(b for b in atts if b.task_id == a.task_id and b.number > a.number
                     and b.state == "succeeded")
        assert retry.node != killed[0], "the retry went to the dead node again"
    assert [a.number for a in atts if a.task_id == "first"] == [1], "finished work re-ran"
