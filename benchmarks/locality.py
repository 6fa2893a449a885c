"""Compute next to the data, on a real network: insitu's placement against locality-blind ones.

Starts a Ray cluster whose worker nodes each live in a network namespace of their own,
joined to this machine by veth links that ``tc`` limits (default 200 Mbit/s), writes a
dataset of shards spread over the nodes' data directories, registers it, and runs the same
scan-and-aggregate work (one task per shard, then a sum) three ways, side by side:

- ``insitu``: the pipeline through insitu's engine on the Ray backend (placement next to the
  data, waiting for a busy holder when that is cheaper than moving);
- ``ray-default``: the same scan as plain Ray tasks (``num_cpus=1``) under Ray's own default
  scheduling;
- ``random``: the same Ray tasks pinned to nodes drawn at random (seeded).

A task placed away from its shard reads it through the holder's transfer service, over the
limited link, exactly as an insitu step would. Node caches are emptied between runs.

    python benchmarks/locality.py [--shards 24] [--shard-mib 48] [--nodes 3] [--mbit 200]
                                  [--repeat 1] [--out benchmarks/results/locality.json]

Needs root (network namespaces) and iproute2; says so and exits 2 otherwise. Sets up and
tears down its namespaces, links and Ray processes itself, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

# Stops the cluster (Ray processes, namespaces, links) if this process dies without doing
# so itself: Ray may end its driver abruptly once its cluster is going away.
REAPER = """\
import os, sys, time
pid, base = int(sys.argv[1]), sys.argv[2]
while True:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        break
    time.sleep(0.5)
from insitu.executor._ray_cluster import LocalRayCluster
c = LocalRayCluster.load(base)
if c is not None:
    c.down()
"""


def write_dataset(dirs: dict[str, Path], shards: int, size: int) -> dict[str, list[str]]:
    """Shard i on worker node i mod N; random bytes (nothing compresses or dedups)."""
    import numpy as np

    nodes = sorted(dirs)
    files: dict[str, list[str]] = {n: [] for n in nodes}
    for i in range(shards):
        node = nodes[i % len(nodes)]
        folder = dirs[node] / "locbench"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"part-{i:03d}.bin"
        path.write_bytes(np.random.default_rng(i).bytes(size))
        files[node].append(str(path))
    return files


def reset(dirs: dict[str, Path], original: list[Any]) -> None:
    """Empty every node's shard cache and forget cached replicas: each run starts equal."""
    from insitu.store import open_store

    for d in dirs.values():
        shutil.rmtree(d / ".shard-cache", ignore_errors=True)
    open_store().put(*original)


def run_insitu(address: str) -> dict[str, Any]:
    import locality_pipelines as lp

    from insitu._results import Run, _open
    from insitu.engine import Engine
    from insitu.executor._ray import RayExecutor
    from insitu.store import DataReadRecord

    store, cfg = _open(None)
    ex = RayExecutor(address)
    try:
        ex.nodes()  # warm: node facts, transfer services, idle workers
        engine = Engine(store, ex, config=cfg)
        t0 = time.perf_counter()
        rec = engine.execute(engine.submit(lp.scan_aggregate.compile(), {}, no_cache=True).id)
        wall = time.perf_counter() - t0
    finally:
        ex.close()
    if rec.state != "succeeded":
        raise SystemExit(f"insitu run {rec.id} ended {rec.state}: insitu explain {rec.id}")
    reads = store.select(DataReadRecord, run_id=rec.id)
    result = Run(rec, store, cfg).output("aggregate")
    return {"wall_s": wall, "run": rec.id, "result": result,
            "local": sum(r.bytes for r in reads if r.local),
            "moved": sum(r.bytes for r in reads if not r.local)}


def run_ray(address: str, shards: list[dict[str, Any]], how: str, seed: int) -> dict[str, Any]:
    """The scan as plain Ray tasks: Ray's default scheduling, or pinned to random nodes."""
    import locality_pipelines as lp
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from insitu.executor._ray import RayExecutor

    ray.cloudpickle.register_pickle_by_value(lp)
    ex = RayExecutor(address)
    infos = [n for n in ex.nodes() if n.cpu > 0]
    names = {n.labels["insitu.dev/ray-node-id"]: n.name for n in infos}
    transfer = {n.name: n.labels["insitu.dev/transfer"] for n in infos
                if "insitu.dev/transfer" in n.labels}

    @ray.remote(num_cpus=1, max_retries=0)
    def scan(shard: dict[str, Any]) -> tuple[dict[str, int], bool]:
        from insitu.datasets import shard_path

        me = names[ray.get_runtime_context().get_node_id()]
        os.environ["INSITU_NODE"] = me
        os.environ["INSITU_TRANSFER"] = json.dumps(transfer)
        local = any(r.get("node") == me for r in shard["replicas"])
        return lp.scan_file(shard_path(shard)), local

    # warm: two idle workers per node, as insitu's executor keeps
    ray.get([scan.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(
        i, soft=False)).remote({"dataset": "-", "shard": "-", "digest": "-", "size": 0,
                                "replicas": [{"node": names[i], "path": os.devnull}]})
        for i in names for _ in range(2)])
    rng = random.Random(seed)
    t0 = time.perf_counter()
    if how == "random":
        refs = [scan.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            rng.choice(sorted(names)), soft=False)).remote(s) for s in shards]
    else:
        refs = [scan.remote(s) for s in shards]
    parts = ray.get(refs)
    result = {"bytes": sum(p["bytes"] for p, _ in parts),
              "zeros": sum(p["zeros"] for p, _ in parts)}
    wall = time.perf_counter() - t0
    ex.close()
    local = sum(s["size"] for s, (_, loc) in zip(shards, parts, strict=True) if loc)
    return {"wall_s": wall, "result": result, "local": local,
            "moved": sum(s["size"] for s in shards) - local}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shards", type=int, default=24)
    ap.add_argument("--shard-mib", type=int, default=48)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--cpus-per-node", type=int, default=2)
    ap.add_argument("--mbit", type=float, default=200.0)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE / "results" / "locality.json"))
    args = ap.parse_args()

    from insitu._units import format_bytes
    from insitu.errors import UserError
    from insitu.executor._netns import NetnsUnavailable
    from insitu.executor._ray_cluster import LocalRayCluster

    work = Path(tempfile.mkdtemp(prefix="insitu-loc-"))
    os.environ["INSITU_HOME"] = str(work / "home")
    cluster = LocalRayCluster(work / "c")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    reaper = subprocess.Popen([sys.executable, "-c", REAPER, str(os.getpid()), str(cluster.base)],
                              start_new_session=True)
    try:
        try:
            address = cluster.up(args.nodes, cpus_per_node=args.cpus_per_node,
                                 memory_per_node=4 << 30, isolated=True,
                                 network_mbit=args.mbit)
        except NetnsUnavailable as e:
            print(f"locality benchmark: this machine does not allow network namespaces: "
                  f"{e.message}\n  fix: {e.hint}", file=sys.stderr)
            return 2
        except UserError as e:
            print(f"locality benchmark: {e.message}\n  fix: {e.hint}", file=sys.stderr)
            return 2
        import insitu
        from insitu.store import ShardRecord, open_store

        dirs = {n.name: Path(n.data_dir) for n in cluster.nodes if n.cpus > 0}
        size = args.shard_mib << 20
        print(f"cluster: {len(dirs)} worker nodes in their own network namespaces, links of "
              f"{args.mbit:g} Mbit/s; head at {address}")
        t = time.perf_counter()
        for node, files in write_dataset(dirs, args.shards, size).items():
            insitu.datasets.add("locbench", files, node=node)
        shards = insitu.dataset("locbench").shards()
        total = sum(s["size"] for s in shards)
        print(f"dataset: {len(shards)} shards, {format_bytes(total)}, written and registered "
              f"in {time.perf_counter() - t:.1f}s")
        original = open_store().select(ShardRecord, dataset="locbench")

        runs: dict[str, list[dict[str, Any]]] = {"insitu": [], "ray-default": [], "random": []}
        for rep in range(args.repeat):
            for name in ("ray-default", "random", "insitu"):
                reset(dirs, original)
                r = run_insitu(address) if name == "insitu" else \
                    run_ray(address, shards, name, args.seed + rep)
                assert r["result"]["bytes"] == total, (name, r["result"])
                runs[name].append(r)
                print(f"  {name:<12} {r['wall_s']:7.2f}s  local {100 * r['local'] / total:5.1f}%"
                      f"  moved {format_bytes(r['moved'])}")
        results = []
        for name, rs in runs.items():
            results.append({"placement": name, "wall_s": statistics.median(r["wall_s"] for r in rs),
                            "walls": [r["wall_s"] for r in rs],
                            "local_share": statistics.median(r["local"] / total for r in rs),
                            "moved_bytes": statistics.median(r["moved"] for r in rs)})
        ins = results[0]["wall_s"]
        print(f"\n{'placement':<12} {'end-to-end':>11} {'read local':>11} {'moved':>11} "
              f"{'insitu faster by':>17}")
        for r in results:
            print(f"{r['placement']:<12} {r['wall_s']:10.2f}s {100 * r['local_share']:10.1f}% "
                  f"{format_bytes(r['moved_bytes']):>11} {r['wall_s'] / ins:16.2f}x")
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({
            "shards": len(shards), "bytes": total, "nodes": len(dirs),
            "cpus_per_node": args.cpus_per_node, "link_mbit": args.mbit,
            "repeat": args.repeat, "results": results}, indent=2))
        print(f"\nwrote {out}")
        last = runs["insitu"][-1]["run"]
        print(f"\n$ insitu show {last}")
        sys.stdout.flush()
        subprocess.run([sys.executable, "-m", "insitu", "show", last],
                       env={**os.environ, "COLUMNS": "110"}, check=False)
        return 0
    except BaseException:
        import traceback

        traceback.print_exc()  # now: Ray may end this process when its cluster goes down
        sys.stderr.flush()
        raise
    finally:
        import ray

        for sig in (signal.SIGTERM, signal.SIGINT):  # a second signal must not cut teardown
            signal.signal(sig, signal.SIG_IGN)
        ray.shutdown()
        cluster.down()
        reaper.kill()
        reaper.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
