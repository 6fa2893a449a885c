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
BASELINES = ["random", "best_fit", "dot_prod", "gpu_packing", "gpu_clustering", "fgd", "insitu"]

#: Published results of the ATC'23 FGD paper's simulator (github.com/hkust-adsl/
#: kubernetes-scheduler-simulator, experiments/analysis/expected_results/analysis_allo_discrete.csv,
#: tune 1.3: the allocated share of GPU capacity in % when 130% of it has arrived, the last
#: column), per variant, policy and seed. Only the rows read so far are here; a policy or
#: variant missing has no published comparison in the table.
PUBLISHED_SOURCE = ("hkust-adsl/kubernetes-scheduler-simulator: experiments/analysis/"
                    "expected_results/analysis_allo_discrete.csv (column 130)")
PUBLISHED: dict[str, dict[str, str]] = {
    "default": {
        "fgd": "42:95.29 43:95.32 44:95.44 45:95.48 46:95.49 47:95.27 48:95.37 "
             "49:95.47 50:95.35 51:95.43",
        "best_fit": "42:93.13 43:93.25 44:93.09 45:93.14 46:93.19 47:93.04 48:92.95 "
                  "49:93.21 50:92.87 51:92.89",
        "random": "42:87.26 43:88.03 44:87.83 45:87.36 46:87.48 47:87.41 48:87.81 "
                "49:87.07 50:87.31",
        "dot_prod": "44:91.03 45:90.89 46:90.74 47:90.75 48:91.28 49:90.93 50:90.76 "
                  "51:90.73",
        "gpu_clustering": "42:91.53 43:91.97 44:91.88 45:92.96 46:90.81 47:91.42 48:92.6 "
                        "49:92.34 50:91.56 51:91.71",
        "gpu_packing": "42:91.57 43:92.06 44:92.1 45:92.79 46:91.3 47:91.29 48:92.78 "
                     "49:92.06 50:91.69 51:92.38",
    },
    "cpu050": {
        "random": "42:91.53 43:91.14 44:91.16 45:91.48 46:91.14 47:91.58 48:91.22 "
                "49:91.05 50:91.16 51:90.97",
        "dot_prod": "42:93.5 43:92.85 44:93.27 45:93.31 46:93.38 47:93.19 48:93.46 "
                  "49:93.37 50:93.19",
        "fgd": "42:95.34 43:95.06 44:95.16 45:95.22 46:95.14 47:95.11 48:95.18 "
             "49:95.23 50:95.33 51:95.29",
        "best_fit": "50:93.68 51:93.52",
    },
    "cpu100": {
        "random": "42:88.98 43:89.48 44:89.17 45:89.28 46:89.17 47:89.08 48:88.41 "
                "49:88.97",
        "best_fit": "50:93.52 51:93.51",
        "fgd": "42:95.21 43:95.11 44:95.59 45:95.3 46:95.34 47:95.48 48:95.4 "
             "49:95.47 50:95.29 51:95.35",
    },
    "cpu200": {
        "random": "42:84.4 43:84.17 44:83.33 45:83.9 46:83.51 47:83.57 48:83.96 "
                "49:83.65",
        "best_fit": "51:92.17",
        "fgd": "42:94.99 43:95.24 44:94.77 45:95.14 46:95.16 47:95.14 48:94.84 "
             "49:95.02 50:94.96 51:95.19",
    },
    "cpu250": {
        "random": "42:80.96 43:80.23 44:80.65 45:80.37 46:80.24 47:80.06 48:80.73 "
                "49:80.22 50:80.53",
        "best_fit": "51:91.49",
        "fgd": "42:93.51 43:93.98 44:93.04 45:93.49 46:93.32 47:93.33 48:93.32 "
             "49:93.52 50:93.57 51:93.03",
    },
    "gpushare100": {
        "random": "42:79.41 43:79.57 44:79.52",
        "fgd": "42:86.85 43:86.68 44:86.93 45:87 46:86.69 47:86.9 48:87.18 "
             "49:86.89 50:86.98 51:86.91",
    },
    "gpushare40": {
        "random": "42:85.9 43:85.46 44:86.3 45:85.92 46:86.04 47:85.4 48:86.42 "
                "49:86.02 50:86.49 51:86.07",
    },
    "gpushare60": {
        "random": "44:83.41 45:83.44 46:83.85 47:83.99 48:83.63 49:83.83 50:83.17 "
                "51:83.67",
        "dot_prod": "42:87.19 43:87.46 44:86.81 45:86.86 46:87.33 47:87.49 48:86.85 "
                  "49:87.28 50:87.15 51:86.73",
        "fgd": "42:91.36 43:91.56 44:91.51 45:91.46 46:91.41 47:91.51 48:91.2 "
             "49:91.42 50:91.23 51:91.35",
        "best_fit": "44:89.42 45:89.43 46:89.29 47:89.1 48:89.2 49:89.41 50:89.15 "
                  "51:89.29",
    },
    "gpushare80": {
        "random": "42:81.63 43:81.23",
        "fgd": "43:89.38 44:89.3 45:89.33 46:89.46 47:89.1 48:89.25 49:89.2 "
             "50:89.34 51:89.49",
    },
    "gpuspec10": {
        "random": "42:87.58 43:87.49 44:87.53 45:87.55 46:87.34 47:87.55 48:87.26 "
                "49:87.23 50:86.86 51:87.89",
        "dot_prod": "42:90.47",
    },
    "multigpu40": {
        "fgd": "48:96.89 49:96.92 50:97.01 51:96.94",
    },
    "multigpu50": {
        "fgd": "42:97.16 43:97.14 44:97.37 45:97.2 46:97.12 47:97.12 48:97.19 "
             "49:97.23 50:96.98 51:97.27",
        "best_fit": "51:95.94",
        "random": "42:89.83 43:90.05 44:90.6 45:89.66 46:91 47:89.97 48:90.41 "
                "49:89.96 50:90.6 51:90.67",
        "dot_prod": "42:94.82 43:94.63 44:94.93 45:94.52 46:95.18 47:94.69",
    },
}


def published(variant: str, policy: str) -> dict[int, float]:
    """Published share (%) per seed for one variant and policy ({} if not known)."""
    text = PUBLISHED.get(variant, {}).get(policy, "")
    return {int(k): float(v) for k, v in (item.split(":") for item in text.split())}


def published_table(report: dict) -> str:
    """Per variant and baseline: ours, published and ours minus published, in points, over the
    seeds both have; with the largest absolute difference at the end."""
    head = ["variant"]
    pols = [p for p in report["policies"] if p != "insitu"]
    for p in pols:
        head += [f"{p} ours", "published", "diff"]
    lines = []
    worst = (0.0, "", "")
    for v, e in report["variants"].items():
        cells = [v]
        for p in pols:
            pub = published(v, p)
            ours = dict(zip(report["seeds"], e.get("per_seed", {}).get(p, []), strict=False))
            both = sorted(set(pub) & set(ours))
            if not both:
                cells += [f"{statistics.fmean(ours.values()) * 100:.2f}" if ours else "-",
                          "-", "-"]
                continue
            a = statistics.fmean(ours[s] * 100 for s in both)
            b = statistics.fmean(pub[s] for s in both)
            n = f" ({len(both)})" if len(both) < 10 else ""
            cells += [f"{a:.2f}", f"{b:.2f}{n}", f"{a - b:+.2f}"]
            if abs(a - b) > abs(worst[0]):
                worst = (a - b, v, p)
        lines.append(cells)
    widths = [max(len(r[i]) for r in [head, *lines]) for i in range(len(head))]
    fmt = "  ".join(("{:<%d}" if i == 0 else "{:>%d}") % w for i, w in enumerate(widths))
    out = [fmt.format(*head), fmt.format(*["-" * w for w in widths])]
    out += [fmt.format(*r) for r in lines]
    out.append(f"published: {PUBLISHED_SOURCE}; (n): seeds compared where fewer than 10")
    if worst[1]:
        out.append(f"largest difference: {worst[0]:+.2f} points ({worst[2]} on {worst[1]})")
    return "\n".join(out)


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
        print()
        print(published_table(rep))
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
        print("\nthe baselines against the published results:")
        print(published_table(report))
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
