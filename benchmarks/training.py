"""Distributed training: gang start-up, restart after a lost rank, DDP throughput.

(a) time from submit to every rank through its first collective, for 2 and 4 workers;
(b) restart time after a rank is SIGKILLed, from the kill to the first training step
    after the checkpoint, and the steps lost (done since the last checkpoint);
(c) throughput (samples/s, after warm-up) of a small DDP job under insitu against plain
    ``torchrun`` running the same loop on this machine.

    python benchmarks/training.py [--repeat 3] [--steps 300]

Prints a table and writes benchmarks/results/training.json. Needs ``insitu[train]``.
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
sys.path.insert(0, str(HERE))


def first_collective(workers: int) -> float:
    import training_pipelines as tp

    import insitu

    job = tp.first_collective_2 if workers == 2 else tp.first_collective_4
    t0 = time.time()
    run = insitu.run(job, no_cache=True)
    return float(run.output(f"first{workers}")) - t0  # type: ignore[arg-type]


def restart() -> dict[str, float]:
    import training_pipelines as tp

    import insitu

    with tempfile.TemporaryDirectory() as d:
        run = insitu.run(tp.restart_job, folder=d, no_cache=True)
        out = run.output("killed")
        killed = json.loads(Path(d, "killed.json").read_text())
        resumed = json.loads(Path(d, "resumed.json").read_text())
    assert out["start"] == resumed["step"]  # type: ignore[index]
    return {"restart_s": resumed["t"] - killed["t"],
            "steps_lost": killed["step"] - (resumed["step"] - 1)}


def throughput_insitu(steps: int, batch: int) -> float:
    import training_pipelines as tp

    import insitu

    run = insitu.run(tp.throughput_job, steps=steps, batch=batch, no_cache=True)
    return float(run.output("throughput")["samples_per_s"])  # type: ignore[index]


def throughput_torchrun(steps: int, batch: int) -> float:
    from insitu.executor._gang import free_port

    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(free_port()), str(HERE / "training_pipelines.py"), str(steps),
           str(batch)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
        str(HERE.parent / "src"), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    line = [x for x in out.splitlines() if x.startswith("{")][-1]
    return float(json.loads(line)["samples_per_s"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--out", default=str(HERE / "results" / "training.json"))
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="insitu-bench-train-")
    os.environ["INSITU_HOME"] = home
    os.environ.setdefault("INSITU_NODE_CPUS", "4")
    r = args.repeat
    first = {w: [first_collective(w) for _ in range(r)] for w in (2, 4)}
    restarts = [restart() for _ in range(r)]
    ins, tr = [], []
    for _ in range(r):  # interleaved, so drift on a shared machine hits both alike
        ins.append(throughput_insitu(args.steps, args.batch))
        tr.append(throughput_torchrun(args.steps, args.batch))
    med = statistics.median
    overhead = (med(tr) - med(ins)) / med(tr) * 100
    result = {
        "machine": {"cpus": os.cpu_count(), "node_cpus_declared": os.environ["INSITU_NODE_CPUS"]},
        "repeat": r,
        "first_collective_s": {str(w): {"median": med(v), "all": v} for w, v in first.items()},
        "restart": {"restart_s": med(x["restart_s"] for x in restarts),
                    "steps_lost": med(x["steps_lost"] for x in restarts), "all": restarts},
        "throughput": {"steps": args.steps, "batch_per_rank": args.batch, "workers": 2,
                       "insitu_samples_per_s": med(ins), "torchrun_samples_per_s": med(tr),
                       "overhead_pct": overhead, "insitu_all": ins, "torchrun_all": tr},
    }
    print(f"{'measure':48} {'value':>12}")
    for w in (2, 4):
        print(f"{f'(a) submit -> first collective, {w} workers (s)':48} "
              f"{med(first[w]):12.2f}")
    print(f"{'(b) kill -> first step after checkpoint (s)':48} "
          f"{result['restart']['restart_s']:12.2f}")
    print(f"{'(b) steps lost (since the checkpoint)':48} {result['restart']['steps_lost']:12g}")
    print(f"{'(c) DDP samples/s under insitu':48} {med(ins):12.0f}")
    print(f"{'(c) DDP samples/s under torchrun':48} {med(tr):12.0f}")
    print(f"{'(c) overhead vs torchrun (%)':48} {overhead:12.1f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
