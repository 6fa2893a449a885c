"""Engine overhead: (a) a 3-step chain, whole process; (b) a fan-out of N trivial steps and a
fan-in, per task and ready-to-running latency; (c) the same fan-out again, every step a cache
hit. Every state change is persisted (SQLite, WAL) in all of them.

Side by side: the floor of this machine for one process per attempt (fork + exit + wait of a
process the size of insitu's worker server), measured in the same run.

    python benchmarks/overhead.py [--n 1000] [--repeat 5]

Prints a table and writes benchmarks/results/overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
PIPES = HERE / "overhead_pipelines.py"


def cli(home: Path, *args: str) -> float:
    env = {**os.environ, "INSITU_HOME": str(home)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "insitu", *args, "--plain"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def run_stats(home: Path) -> dict[str, float]:
    sys.path.insert(0, str(HERE.parent / "src"))
    from insitu.store import open_store

    store = open_store(f"sqlite:///{home / 'insitu.db'}")
    run = store.list_runs(limit=1)[0]
    tasks = {t.id: t for t in store.list_tasks(run.id)}
    lat = []
    for a in store.list_attempts(run.id):
        t = tasks[a.task_id]
        if a.number == 1 and t.map_index is not None and t.ready_at and a.started_at:
            lat.append((a.started_at - t.ready_at) * 1000)
    lat.sort()
    out = {"engine_s": (run.ended_at or 0) - (run.started_at or 0),
           "hits": sum(t.state == "cached" for t in tasks.values())}
    if lat:
        out["ready_to_running_p50_ms"] = lat[len(lat) // 2]
        out["ready_to_running_p99_ms"] = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    store.close()
    return out


def process_floor(n: int = 300) -> float:
    """ms per process: fork + _exit + wait, from a process holding insitu's worker imports."""
    code = (
        "import os,time,sys\n"
        "import insitu.executor._worker, insitu.sdk\n"
        f"sys.path.insert(0, {str(HERE)!r}); import overhead_pipelines\n"
        "t=time.perf_counter(); pids=[]\n"
        f"for i in range({n}):\n"
        "    p=os.fork()\n"
        "    if p==0: os._exit(0)\n"
        "    pids.append(p)\n"
        "    if len(pids)>=8: os.waitpid(pids.pop(0),0)\n"
        "for p in pids: os.waitpid(p,0)\n"
        f"print((time.perf_counter()-t)/{n}*1000)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return float(out.stdout.strip())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="fan-out width (default 1000)")
    ap.add_argument("--repeat", type=int, default=5, help="runs of the chain (default 5)")
    ap.add_argument("--out", default=str(HERE / "results" / "overhead.json"))
    args = ap.parse_args()
    n = args.n
    rows: list[tuple[str, str, str]] = []
    result: dict[str, object] = {"n": n, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "chain"
        cli(home, "run", f"{PIPES}:chain")  # first run creates the database
        chain = [cli(home, "run", f"{PIPES}:chain", "--no-cache")
                 for _ in range(args.repeat)]
        result["a_chain_s"] = {"median": statistics.median(chain), "min": min(chain),
                               "runs": chain}
        rows.append(("(a) 3-step chain, whole process", f"{statistics.median(chain):.3f} s "
                     f"(min {min(chain):.3f})", "<= 0.6 s"))

        for pipeline, label in (("fan", "default cpu=1 per step"),
                                ("fan_light", "cpu=0.1 per step")):
            home = Path(tmp) / pipeline
            whole = cli(home, "run", f"{PIPES}:{pipeline}", "-p", f"n={n}")
            st = run_stats(home)
            per_task = st["engine_s"] / n * 1000
            result[f"b_{pipeline}"] = {"whole_process_s": whole, **st,
                                       "per_task_ms": per_task}
            rows.append((f"(b) fan-out {n} + fan-in, {label}",
                         f"{per_task:.2f} ms/task (run {st['engine_s']:.2f} s, "
                         f"process {whole:.2f} s)", "<= 0.7 ms/task"))
            rows.append((f"    ready-to-running p50 / p99, {label}",
                         f"{st['ready_to_running_p50_ms']:.1f} / "
                         f"{st['ready_to_running_p99_ms']:.1f} ms", ""))
        whole = cli(home, "run", f"{PIPES}:fan_light", "-p", f"n={n}")
        st = run_stats(home)
        result["c_cache_hits"] = {"whole_process_s": whole, **st}
        rows.append((f"(c) same fan-out again, {int(st['hits'])} cache hits",
                     f"{st['engine_s']:.3f} s in the engine, process {whole:.2f} s",
                     "<= 0.5 s"))
    floor = process_floor()
    result["process_floor_ms"] = floor
    rows.append(("floor: fork+exit+wait of one process (this machine)",
                 f"{floor:.2f} ms/process", "(baseline)"))

    w = max(len(r[0]) for r in rows)
    print(f"{'measure':<{w}}  {'measured':<44}  target")
    print("-" * (w + 60))
    for r in rows:
        print(f"{r[0]:<{w}}  {r[1]:<44}  {r[2]}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
