"""Tuning quality and overhead, through insitu.tune (every trial a step).

Best value found against the number of trials, TPE against random search, median over
seeds, on Branin, Hartmann-6 and an RBF SVM on the breast-cancer data bundled with
scikit-learn; then the overhead per trial of a trivial objective with parallel=2.

    python benchmarks/tuning.py [--seeds 10] [--trials 100] [--svm-trials 40]

Prints a table and writes benchmarks/results/tuning.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))


def best_curve(values: list[float], goal: str) -> list[float]:
    out, best = [], None
    for v in values:
        best = v if best is None else (min(best, v) if goal == "minimize" else max(best, v))
        out.append(best)
    return out


def study(problem: str, algorithm: str, seed: int, trials: int, parallel: int = 1) -> list[float]:
    from tuning_pipelines import PROBLEMS

    import insitu
    from insitu.sdk import Pipeline

    step, space, goal = PROBLEMS[problem]

    def body() -> None:
        insitu.tune(step, space=space, metric="value", goal=goal, algorithm=algorithm,
                    max_trials=trials, parallel=parallel, seed=seed)

    run = insitu.run(Pipeline(body, name=f"{problem}-{algorithm}-{seed}"), no_cache=True)
    tasks = sorted((t for t in run.tasks() if t.map_index is not None),
                   key=lambda t: t.map_index or 0)
    return [float(t.output["value"]) for t in tasks if t.output]  # type: ignore[index]


def overhead(n: int = 40) -> dict[str, float]:
    from tuning_pipelines import trivial

    import insitu
    from insitu.sdk import Pipeline

    def body() -> None:
        insitu.tune(trivial, space={"x": insitu.tune.uniform(-1, 1)}, metric="value",
                    goal="minimize", algorithm="random", max_trials=n, parallel=2, seed=0)

    t0 = time.perf_counter()
    run = insitu.run(Pipeline(body, name="overhead"), no_cache=True)
    wall = time.perf_counter() - t0
    tasks = [t for t in run.tasks() if t.map_index is not None]
    parent = run.task("trivial")
    step_s = (parent.ended_at or 0) - (parent.started_at or 0)
    lat = sorted((t.ended_at - t.ready_at) * 1000 for t in tasks  # type: ignore[operator]
                 if t.ended_at and t.ready_at)
    return {"trials": len(tasks), "run_wall_per_trial_ms": wall / len(tasks) * 1000,
            "wall_per_trial_ms": step_s / len(tasks) * 1000,
            "launch_to_recorded_p50_ms": lat[len(lat) // 2],
            "launch_to_recorded_p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--svm-trials", type=int, default=40)
    ap.add_argument("--problems", default="branin,hartmann6,svm_breast_cancer")
    ap.add_argument("--out", default=str(HERE / "results" / "tuning.json"))
    args = ap.parse_args()
    os.environ["INSITU_HOME"] = tempfile.mkdtemp(prefix="insitu-tuning-bench-")
    from tuning_pipelines import PROBLEMS

    result: dict[str, object] = {"seeds": args.seeds}
    checkpoints = [10, 20, 40, 60, 100]
    print(f"{'problem':<18} {'algorithm':<7} " + " ".join(f"{'@' + str(c):>9}" for c in
                                                            checkpoints))
    for problem in filter(None, args.problems.split(",")):
        goal = PROBLEMS[problem][2]
        n = args.svm_trials if problem.startswith("svm") else args.trials
        curves: dict[str, list[float]] = {}
        for algo in ("tpe", "random"):
            per_seed = [best_curve(study(problem, algo, s, n), goal) for s in range(args.seeds)]
            med = [statistics.median(c[i] for c in per_seed) for i in range(n)]
            curves[algo] = med
            cells = " ".join(f"{med[c - 1]:>9.4f}" if c <= n else f"{'-':>9}"
                             for c in checkpoints)
            print(f"{problem:<18} {algo:<7} {cells}", flush=True)
        target = curves["random"][-1]
        better = (lambda a, b: a <= b) if goal == "minimize" else (lambda a, b: a >= b)
        reach = next((i + 1 for i, v in enumerate(curves["tpe"]) if better(v, target)), None)
        print(f"{'':<18} TPE reaches random's {n}-trial median ({target:.4f}) at trial "
              f"{reach if reach else 'never'}")
        result[problem] = {"goal": goal, "trials": n, "median_best": curves,
                           "tpe_trials_to_random_final": reach}
    ov = overhead()
    result["overhead"] = ov
    print(f"\noverhead, trivial objective, parallel=2, {ov['trials']} trials: "
          f"{ov['wall_per_trial_ms']:.1f} ms per trial in the tuning step "
          f"({ov['run_wall_per_trial_ms']:.1f} ms counting the run's start-up), "
          "launch to recorded result "
          f"p50 {ov['launch_to_recorded_p50_ms']:.1f} ms, p99 "
          f"{ov['launch_to_recorded_p99_ms']:.1f} ms (target <= 20 ms)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
