"""``insitu sim``: replay a trace through one or more placement policies."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import click

from insitu._units import format_duration
from insitu.errors import UserError

#: at most this many seeds, cycles and this growth: beyond them a run takes days, not minutes
MAX_SEEDS = 1000
MAX_CYCLES = 100
MAX_GROW = 100.0


def _seeds(text: str) -> list[int]:
    """``42``, ``42-51`` or ``1,2,3`` (or a mix) as a list; a clear error otherwise."""
    out: list[int] = []
    fix = "write 42 or 42-51 or 1,2,3 (seeds are whole numbers from 0)"
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                a_text, b_text = part.split("-")
                a, b = int(a_text), int(b_text)
            else:
                a = b = int(part)
        except ValueError:
            raise click.BadParameter(f"{text!r} is not a list of seeds; {fix}",
                                     param_hint="--seeds") from None
        if b < a:
            raise click.BadParameter(f"{part!r} runs backwards; write {b}-{a}",
                                     param_hint="--seeds")
        if len(out) + (b - a + 1) > MAX_SEEDS:
            raise click.BadParameter(f"{text!r} asks for more than {MAX_SEEDS:,} seeds; "
                                     "give fewer (10 seeds, 42-51, is the usual protocol)",
                                     param_hint="--seeds")
        out.extend(range(a, b + 1))
    if not out:
        raise click.BadParameter(f"{text!r} names no seed; {fix}", param_hint="--seeds")
    return out


def _positive(value: float, option: str, example: str, upper: float = math.inf) -> None:
    """A finite number above 0 (and at most ``upper``), or a clear error naming the option."""
    if not math.isfinite(value) or value <= 0 or value > upper:
        limit = f" and at most {upper:g}" if math.isfinite(upper) else ""
        raise click.BadParameter(f"{value} is not allowed; give a finite number above 0{limit}, "
                                 f"e.g. {option} {example}", param_hint=option)


def _writable(path: Path | None, option: str) -> None:
    """``path`` can be written: its folder exists, it is not a folder, and opening it for
    writing works (tried now, so a long run does not fail at its very end)."""
    if path is None:
        return
    folder = path.parent
    if path.is_dir():
        raise click.BadParameter(f"{path} is a folder; give a file name, e.g. {path / 'x'}",
                                 param_hint=option)
    if not folder.is_dir():
        raise click.BadParameter(f"folder {folder} does not exist; create it first "
                                 f"(mkdir -p {folder}) or write elsewhere", param_hint=option)
    existed = path.exists()
    try:
        with path.open("a"):
            pass
    except OSError as e:
        raise click.BadParameter(f"{path} cannot be written ({e.strerror or e}); choose a "
                                 "folder you can write to", param_hint=option) from None
    if not existed:
        path.unlink()


@click.command("sim")
@click.option("--mode", type=click.Choice(["packing", "online"]), default="packing",
              show_default=True, help="packing: the ATC'23 FGD protocol; online: arrivals and "
                                      "departures with queues")
@click.option("--trace", "trace", type=click.Path(path_type=Path), required=True,
              help="task list CSV (openb pod list)")
@click.option("--nodes", type=click.Path(path_type=Path), default=None,
              help="node list CSV (default: openb_node_list_gpu_node.csv beside the trace)")
@click.option("--policies", default="insitu,fgd,best_fit", show_default=True,
              help="comma-separated policies to compare")
@click.option("--seeds", default="42", show_default=True, help="e.g. 42 or 42-51")
@click.option("--grow", type=float, default=1.3, show_default=True,
              help="packing: arrived GPU request as a multiple of capacity")
@click.option("--speedup", type=float, default=1.0, show_default=True,
              help="online: divide arrival times by this (durations stay) to raise the load")
@click.option("--load", type=float, default=None,
              help="online: set the offered load instead (GPU-time asked over capacity x "
                   "arrival window, e.g. 0.9); arrivals are compressed to reach it")
@click.option("--cycles", type=int, default=1, show_default=True,
              help="online: replay the trace this many times in a row (a higher --load needs "
                   "more)")
@click.option("--offline", is_flag=True,
              help="packing: also the best offline packing found (tasks known in advance), "
                   "a lower end for the limit of any policy")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="write JSON here")
@click.option("--plot", type=click.Path(path_type=Path), default=None, help="write a PNG here")
def sim(mode: str, trace: Path, nodes: Path | None, policies: str, seeds: str, grow: float,
        speedup: float, load: float | None, cycles: int, offline: bool, out: Path | None,
        plot: Path | None) -> None:
    """Replay TRACE through each policy side by side and print a table."""
    seed_list = _seeds(seeds)  # every option is checked before any work starts
    _positive(grow, "--grow", "1.3", MAX_GROW)
    _positive(speedup, "--speedup", "10")
    if load is not None:
        _positive(load, "--load", "0.9", MAX_GROW)
    if not 1 <= cycles <= MAX_CYCLES:
        raise click.BadParameter(f"{cycles} is not allowed; give 1 to {MAX_CYCLES}, e.g. "
                                 "--cycles 3", param_hint="--cycles")
    _writable(out, "--out")
    _writable(plot, "--plot")
    try:
        _run(mode, trace, nodes, policies, seed_list, grow, speedup, out, plot, load, cycles,
             offline)
    except UserError as e:
        raise click.ClickException(str(e)) from None


def _run(mode: str, trace: Path, nodes_path: Path | None, policies: str, seeds: list[int],
         grow: float, speedup: float, out: Path | None, plot: Path | None,
         load: float | None = None, cycles: int = 1, offline: bool = False) -> None:
    from insitu.scheduler._policies import POLICIES, get_policy
    from insitu.scheduler._report import mean_curve, packing_table, plot_curves, summarise
    from insitu.scheduler._trace import load_nodes, load_tasks

    names = [p.strip() for p in policies.split(",") if p.strip()]
    for p in names:
        get_policy(p)  # unknown names fail here, before any work
    if not names:
        raise UserError("no policies given", hint=f"e.g. --policies {','.join(POLICIES)}")
    if offline and mode != "packing":
        raise UserError("--offline applies to packing runs only",
                        hint="drop --offline, or use --mode packing")
    nodes_path = nodes_path or trace.parent / "openb_node_list_gpu_node.csv"
    nodes = load_nodes(nodes_path)
    models = {g.model for n in nodes for g in n.gpus}
    tasks = load_tasks(trace, models=models)
    _check_placeable(nodes, tasks, trace)
    report: dict = {"mode": mode, "trace": str(trace), "nodes": str(nodes_path),
                    "policies": names, "seeds": seeds}
    if mode == "packing":
        from insitu.scheduler._sim import run_packing

        reqs = [t.request for t in tasks]
        results = [run_packing(nodes, reqs, policy=p, seed=s, grow=grow)
                   for s in seeds for p in names]
        summ = summarise(results)
        found: dict[str, float] = {}
        if offline:
            from insitu.scheduler._sim import offline_packing

            runs = [offline_packing(nodes, reqs, seed=s, grow=grow) for s in seeds]
            found = {trace.stem: statistics.fmean(o.share for o in runs)}
            report["offline"] = {"share": found[trace.stem],
                                 "how": [f"{o.order}, placed by {o.policy}" for o in runs]}
        click.echo(packing_table({trace.stem: summ}, names, offline=found or None))
        report["results"] = summ
        curves = {p: mean_curve([r for r in results if r.policy == p]) for p in names}
        report["curves"] = curves
        if plot:
            plot_curves(curves, plot, title=f"{trace.stem}: allocated vs arrived")
    else:
        from insitu.scheduler._online import run_online

        rows = []
        res: dict[str, dict] = {}
        for p in names:
            rs = [run_online(nodes, tasks, policy=p, seed=s, speedup=speedup, load=load,
                             cycles=cycles) for s in seeds]
            res[p] = {"offered_load": rs[0].offered, "speedup": rs[0].speedup,
                      "cycles": cycles,
                      "preemptions": statistics.fmean(r.preemptions for r in rs),
                      "delay_by_queue_s": rs[0].delay_by_queue,
                      "mean_utilisation": statistics.fmean(r.mean_utilisation for r in rs),
                      "peak_utilisation": statistics.fmean(r.peak_utilisation for r in rs),
                      "delay_p50_s": statistics.fmean(r.delay_p50 for r in rs),
                      "delay_p99_s": statistics.fmean(r.delay_p99 for r in rs),
                      "delay_mean_s": statistics.fmean(r.delay_mean for r in rs),
                      "delay_max_s": statistics.fmean(r.delay_max for r in rs),
                      "started": statistics.fmean(r.started for r in rs),
                      "waited": statistics.fmean(r.waited for r in rs),
                      "tasks": rs[0].tasks,
                      "queue_share": rs[0].queue_share,
                      "seconds": statistics.fmean(r.seconds for r in rs),
                      "curve": list(rs[0].curve)}
            e = res[p]
            shares = ", ".join(f"{q} {v * 100:.1f}%" for q, v in rs[0].queue_share.items())
            delays = " ".join(f"{format_duration(e[f'delay_{k}_s']):>6}"
                              for k in ("p50", "p99", "mean", "max"))
            rows.append(f"{p:<16} {e['mean_utilisation'] * 100:5.1f}% "
                        f"{e['peak_utilisation'] * 100:5.1f}%  {e['waited']:6.0f} "
                        f"{e['waited'] / max(1, e['tasks']) * 100:5.1f}%  {delays}  "
                        f"{e['preemptions']:7.0f}  {shares}")
        r0 = rs[0]
        click.echo(f"{r0.tasks:,} tasks; peak offered load {r0.offered * 100:.1f}% of GPU "
                   f"capacity (arrivals {r0.speedup:,.0f}x faster than the trace, "
                   f"{cycles} cycle{'s' if cycles > 1 else ''})")
        click.echo(f"{'':<16} {'GPU allocated':>13}  {'waited':>13}  "
                   f"{'delay to first start':>27}")
        click.echo(f"{'policy':<16} {'mean':>6} {'peak':>6}  {'tasks':>6} {'share':>6}  "
                   f"{'p50':>6} {'p99':>6} {'mean':>6} {'max':>6}  {'evicted':>7}  "
                   "GPU-time share per queue")
        for r in rows:
            click.echo(r)
        qnames = sorted({q for e in res.values() for q in e["delay_by_queue_s"]})
        click.echo("delay to first start per queue, p50 / p99:")
        click.echo(f"{'policy':<16} " + "  ".join(f"{q:>15}" for q in qnames))
        for p in names:
            by = res[p]["delay_by_queue_s"]
            cells = [f"{format_duration(by[q][0])} / {format_duration(by[q][1])}"
                     if q in by else "-" for q in qnames]
            click.echo(f"{p:<16} " + "  ".join(f"{c:>15}" for c in cells))
        report["results"] = res
        if plot:
            plot_curves({p: res[p]["curve"] for p in names}, plot,
                        title=f"{trace.stem}: GPU allocated over time", xlabel="hours",
                        ylabel="allocated share of GPU capacity")
    if out:
        out.write_text(json.dumps(report, indent=1))
        click.echo(f"wrote {out}")
    if plot:
        click.echo(f"wrote {plot}")


def _check_placeable(nodes: list, tasks: list, trace: Path) -> None:
    """Tasks that no node could ever hold are reported up front, with the reason."""
    from insitu.scheduler._explain import explain
    from insitu.scheduler._state import ClusterState

    st = ClusterState(nodes, policy="first_fit")
    seen: set[tuple] = set()
    bad: list[str] = []
    for k, t in enumerate(tasks):
        r = t.request
        key = (r.cpu_milli, r.memory, r.gpu_count, r.gpu_milli, r.gpu_types)
        if key in seen:
            continue
        seen.add(key)
        text, never = explain(st, r)
        if never:
            bad.append(f"{trace}:{k + 2}: task {r.name} can never be placed: {text}")
    if bad:
        more = f"\n  ... and {len(bad) - 5} more shapes" if len(bad) > 5 else ""
        click.echo("warning: some tasks can never be placed on this cluster (they are "
                   "counted as unplaced):\n  " + "\n  ".join(bad[:5]) + more, err=True)
