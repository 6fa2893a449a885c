"""Packing benchmark of insitu's placement policies on the openb trace (ATC'23 FGD protocol).

For each variant and seed: shuffle the tasks, grow the list to 1.3x the GPU capacity, place the
tasks one by one (no departures) with every policy, and record the allocated share of milli-GPU
capacity at the end. Prints a side-by-side table, the MILP upper bound per variant, the placement
rate of the default policy on the 1,213-node cluster and on a 10,000-node scaled copy, and writes
JSON (and a PNG plot) to ``benchmarks/results/``.

    python benchmarks/scheduler_openb.py                       # everything (long)
    python benchmarks/scheduler_openb.py --variants default --seeds 42-51
    python benchmarks/scheduler_openb.py --variants default,gpushare40 --policies insitu,fgd
    python benchmarks/scheduler_openb.py --rate-only
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from insitu.scheduler._bound import bound_curve, packing_bound
from insitu.scheduler._policies import POLICIES
from insitu.scheduler._report import mean_curve, packing_table, plot_curves, summarise
from insitu.scheduler._sim import (
    PackingResult,
    gpu_capacity,
    offline_packing,
    packing_tasks,
    run_packing,
    scale_cluster,
)
from insitu.scheduler._trace import load_nodes, load_tasks

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "openb"
BASELINES = ["random", "first_fit", "best_fit", "least_allocated", "dot_prod", "gpu_packing",
             "gpu_clustering", "fgd", "fgd_bf", "insitu"]


def _seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--variants", default="all",
                    help="comma-separated, e.g. default,gpushare40 (default: every pod list)")
    ap.add_argument("--seeds", default="42-51")
    ap.add_argument("--policies", default=",".join(BASELINES))
    ap.add_argument("--no-bound", action="store_true")
    ap.add_argument("--bound-time", type=float, default=5.0,
                    help="time limit of each bound (pooled MILP; configuration LP) in s")
    ap.add_argument("--bound-seeds", default=None,
                    help="seeds to compute the bound on (default: all of --seeds)")
    ap.add_argument("--offline", action="store_true",
                    help="also the best offline packing found (on the bound seeds): with the "
                         "bound it brackets the limit of any policy")
    ap.add_argument("--bound-curve", action="store_true",
                    help="also the bound over arrived workload (seed 42 or the first seed), "
                         "drawn on the plot of the first variant")
    ap.add_argument("--rate", action="store_true", help="also measure placements/s")
    ap.add_argument("--rate-only", action="store_true")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--table-from", type=Path, default=None,
                    help="only print the table of a JSON written by an earlier run")
    ap.add_argument("--merge", default=None,
                    help="comma-separated JSONs of earlier runs (same seeds, other policies or "
                         "variants): merge them into one report (bounds and plot as asked), "
                         "instead of running policies")
    a = ap.parse_args(argv)
    if a.merge:
        return _merge(a)
    if a.table_from is not None:
        rep = json.loads(a.table_from.read_text())
        rows = {v: e["policies"] for v, e in rep["variants"].items()}
        bnds = {v: e["bound"]["share"] for v, e in rep["variants"].items() if "bound" in e}
        offl = {v: e["offline"]["share"] for v, e in rep["variants"].items() if "offline" in e}
        print(packing_table(rows, rep["policies"], bnds or None, offl or None))
        return 0

    nodes = load_nodes(a.data / "openb_node_list_gpu_node.csv")
    models = {g.model for n in nodes for g in n.gpus}
    policies = [p for p in a.policies.split(",") if p]
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        print(f"unknown policies {unknown}; choose from {', '.join(POLICIES)}", file=sys.stderr)
        return 2
    if a.variants == "all":
        variants = sorted((p.name[len("openb_pod_list_"):-4]
                           for p in a.data.glob("openb_pod_list_*.csv")),
                          key=lambda v: (v != "default", v))
    else:
        variants = [v for v in a.variants.split(",") if v]
    seeds = _seeds(a.seeds)
    a.out.mkdir(parents=True, exist_ok=True)
    report: dict = {"protocol": "ATC'23 FGD packing: shuffle(seed), grow to 1.3x GPU capacity, "
                                "no departures; share of milli-GPU capacity allocated at the end",
                    "nodes": len(nodes), "gpus": gpu_capacity(nodes) // 1000,
                    "seeds": seeds, "policies": policies, "variants": {}}
    rows: dict[str, dict[str, dict[str, float]]] = {}
    bounds: dict[str, float] = {}
    offline: dict[str, float] = {}
    if not a.rate_only:
        for v in variants:
            tasks = [t.request for t in load_tasks(a.data / f"openb_pod_list_{v}.csv",
                                                   models=models)]
            results: list[PackingResult] = []
            t0 = time.perf_counter()
            for s in seeds:
                for p in policies:
                    results.append(run_packing(nodes, tasks, policy=p, seed=s, explain=False))
            summ = summarise(results)
            rows[v] = summ
            entry: dict = {"policies": summ,
                           "per_seed": {p: [r.share for r in results if r.policy == p]
                                        for p in policies},
                           "seconds": time.perf_counter() - t0}
            if not a.no_bound:
                bseeds = _seeds(a.bound_seeds) if a.bound_seeds else seeds
                bs = [packing_bound(nodes, packing_tasks(tasks, gpu_capacity(nodes), s),
                                    time_limit=a.bound_time) for s in bseeds]
                bounds[v] = statistics.fmean(b.share for b in bs)
                entry["bound"] = {"share": bounds[v], "all_optimal": all(b.optimal for b in bs),
                                  "seeds": bseeds, "methods": [b.method for b in bs]}
            if a.offline:
                offline[v] = _offline(a, nodes, tasks, seeds, entry)
            report["variants"][v] = entry
            print(f"{v}: {len(seeds)} seeds x {len(policies)} policies in "
                  f"{entry['seconds']:.0f}s", file=sys.stderr, flush=True)
            curves = {p: mean_curve([r for r in results if r.policy == p]) for p in policies}
            entry["curves"] = curves
            print(packing_table({v: summ}, policies, {v: bounds[v]} if v in bounds else None,
                                {v: offline[v]} if v in offline else None), flush=True)
            _write(a.out, _name(a, variants), report)  # after every variant: partial runs count
            if v == variants[0]:
                bc: list[tuple[float, float]] = []
                if a.bound_curve:
                    s0 = 42 if 42 in seeds else seeds[0]
                    bc = bound_curve(nodes, packing_tasks(tasks, gpu_capacity(nodes), s0),
                                     time_limit=a.bound_time)
                    entry["bound_curve"] = {"seed": s0, "points": bc}
                    _write(a.out, _name(a, variants), report)
                plot_curves(curves, a.out / f"scheduler_openb_{v}.png", bound=bc,
                            title=f"openb {v}: allocated vs arrived, mean of {len(seeds)} seeds")
        print("\nall variants (mean over seeds):")
        print(packing_table(rows, policies, bounds or None, offline or None))
    if a.rate or a.rate_only:
        report["rates"] = {}
        tasks = [t.request for t in load_tasks(a.data / "openb_pod_list_default.csv",
                                               models=models)]
        for size in (len(nodes), 10_000):
            cl = nodes if size == len(nodes) else scale_cluster(nodes, size)
            r = run_packing(cl, tasks, policy="insitu", seed=42, points=10)  # with explanations
            report["rates"][str(size)] = {"placements_per_s": r.rate, "decisions": r.tasks,
                                          "seconds": r.seconds}
            print(f"insitu policy on {size:,} nodes: {r.tasks:,} decisions in {r.seconds:.1f}s "
                  f"= {r.rate:,.0f} placements/s (share {r.share * 100:.2f}%)", flush=True)
    path = _write(a.out, _name(a, variants), report)
    print(f"wrote {path}", file=sys.stderr)
    return 0


def _merge(a: argparse.Namespace) -> int:
    """One report from several runs: per variant, the union of their policies."""
    nodes = load_nodes(a.data / "openb_node_list_gpu_node.csv")
    models = {g.model for n in nodes for g in n.gpus}
    reps = [json.loads(Path(p).read_text()) for p in a.merge.split(",") if p]
    seeds = reps[0]["seeds"]
    if any(r["seeds"] != seeds for r in reps):
        print("the runs to merge use different seeds", file=sys.stderr)
        return 2
    policies = [p for p in BASELINES if any(p in r["policies"] for r in reps)]
    order = sorted({v for r in reps for v in r["variants"]}, key=lambda v: (v != "default", v))
    report: dict = {**{k: reps[0][k] for k in ("protocol", "nodes", "gpus")}, "seeds": seeds,
                    "policies": policies, "merged_from": a.merge.split(","), "variants": {}}
    rows: dict[str, dict[str, dict[str, float]]] = {}
    bounds: dict[str, float] = {}
    offline: dict[str, float] = {}
    for v in order:
        entry: dict = {"policies": {}, "per_seed": {}, "curves": {}}
        for r in reps:
            e = r["variants"].get(v)
            if e is None:
                continue
            for key in ("policies", "per_seed", "curves"):
                entry[key].update(e.get(key, {}))
            for key in ("bound", "bound_curve", "offline"):  # kept unless computed again
                if key in e:
                    entry[key] = e[key]
        rows[v] = entry["policies"]
        tasks = [] if a.no_bound and not a.offline else [
            t.request for t in load_tasks(a.data / f"openb_pod_list_{v}.csv", models=models)]
        if a.offline:
            _offline(a, nodes, tasks, seeds, entry)
            print(f"{v}: offline {entry['offline']['share'] * 100:.2f}%", file=sys.stderr,
                  flush=True)
        if "offline" in entry:
            offline[v] = entry["offline"]["share"]
        if a.no_bound and "bound" in entry:
            bounds[v] = entry["bound"]["share"]
        if not a.no_bound:
            bseeds = _seeds(a.bound_seeds) if a.bound_seeds else seeds
            t0 = time.perf_counter()
            bs = [packing_bound(nodes, packing_tasks(tasks, gpu_capacity(nodes), s),
                                time_limit=a.bound_time) for s in bseeds]
            bounds[v] = statistics.fmean(b.share for b in bs)
            entry["bound"] = {"share": bounds[v], "all_optimal": all(b.optimal for b in bs),
                              "seeds": bseeds, "methods": [b.method for b in bs],
                              "seconds": time.perf_counter() - t0}
            if a.bound_curve and v == order[0]:
                s0 = 42 if 42 in seeds else seeds[0]
                bc = bound_curve(nodes, packing_tasks(tasks, gpu_capacity(nodes), s0),
                                 time_limit=a.bound_time)
                entry["bound_curve"] = {"seed": s0, "points": bc}
                plot_curves({p: entry["curves"][p] for p in policies if p in entry["curves"]},
                            a.out / f"scheduler_openb_{v}.png", bound=bc,
                            title=f"openb {v}: allocated vs arrived, mean of {len(seeds)} "
                                  f"seeds; bound: seed {s0}")
            print(f"{v}: bound {bounds[v] * 100:.2f}%", file=sys.stderr, flush=True)
        report["variants"][v] = entry
        _write(a.out, "scheduler_openb_merged.json", report)
    print(packing_table(rows, policies, bounds or None, offline or None))
    print(f"wrote {a.out / 'scheduler_openb_merged.json'}", file=sys.stderr)
    return 0


def _offline(a: argparse.Namespace, nodes: list, tasks: list, seeds: list[int],
             entry: dict) -> float:
    """The best offline packing on the bound seeds, recorded in ``entry``; its mean share."""
    oseeds = _seeds(a.bound_seeds) if a.bound_seeds else seeds
    t0 = time.perf_counter()
    found = [offline_packing(nodes, tasks, seed=s) for s in oseeds]
    share = statistics.fmean(o.share for o in found)
    entry["offline"] = {"share": share, "seeds": oseeds,
                        "how": [f"{o.order}, placed by {o.policy}" for o in found],
                        "seconds": time.perf_counter() - t0}
    return share


def _name(a: argparse.Namespace, variants: list[str]) -> str:
    if a.rate_only:
        return "scheduler_openb_rates.json"
    if a.variants == "all":
        return "scheduler_openb.json"
    return f"scheduler_openb_{'_'.join(variants)[:80]}.json"


def _write(out: Path, name: str, report: dict) -> Path:
    (out / name).write_text(json.dumps(report, indent=1))
    return out / name


if __name__ == "__main__":
    sys.exit(main())
