"""Commands over what steps logged: ``insitu metrics`` and ``insitu compare``."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from insitu.cli._common import _store, check_output, console, esc, write_bytes
from insitu.cli._render import natural_key
from insitu.errors import not_found
from insitu.store import DataReadRecord, MetricRecord, ParamRecord, RunRecord, Store


def _series(store: Store, run: RunRecord, step: str | None
            ) -> dict[tuple[str, str], list[MetricRecord]]:
    """(task, metric) -> points of the last attempt that logged it."""
    pts = store.select(MetricRecord, run_id=run.id)
    if step is not None:
        pts = [p for p in pts if p.task_id == step or p.task_id.startswith(f"{step}[")]
    last: dict[tuple[str, str], int] = {}
    for p in pts:
        last[(p.task_id, p.name)] = max(last.get((p.task_id, p.name), 0), p.attempt)
    out: dict[tuple[str, str], list[MetricRecord]] = defaultdict(list)
    for p in pts:
        if p.attempt == last[(p.task_id, p.name)]:
            out[(p.task_id, p.name)].append(p)
    return out


def data_summary(store: Store, run: RunRecord) -> tuple[str, Table] | None:
    """For a run that read shards: the line ``data: read 4.1 GiB, 99.6% local, moved
    16.0 MiB (from node-1 12.0 MiB, node-2 4.0 MiB)`` and a table of the same per step.
    Every attempt's reads count: a failed attempt's moved bytes crossed the network too."""
    from insitu._units import format_bytes, format_duration

    reads = store.select(DataReadRecord, run_id=run.id)
    if not reads:
        return None
    tasks = {t.id: t.step_id for t in store.list_tasks(run.id)}
    per: dict[str, list[DataReadRecord]] = defaultdict(list)
    for r in reads:
        per[tasks.get(r.task_id, r.task_id)].append(r)

    def figures(rs: list[DataReadRecord]) -> tuple[str, str, str, str, str]:
        total = sum(r.bytes for r in rs)
        moved = [r for r in rs if not r.local]
        src: dict[str, int] = defaultdict(int)
        for r in moved:
            src[r.source] += r.bytes
        frm = ", ".join(f"{k} {format_bytes(v)}" for k, v in
                        sorted(src.items(), key=lambda kv: -kv[1]))
        local = sum(r.bytes for r in rs if r.local)
        pct = f"{100 * local / total:.1f}%" if total else "-"
        secs = sum(r.seconds for r in moved)
        return (format_bytes(total), pct, format_bytes(sum(r.bytes for r in moved)), frm,
                format_duration(secs) if moved else "")

    total, pct, moved, frm, _ = figures(reads)
    line = f"data: read {total}, {pct} local, moved {moved}" + (f" (from {frm})" if frm else "")
    tbl = Table(title="data read per step", title_justify="left")
    for col in ("step", "read", "local", "moved", "from", "moving took"):
        tbl.add_column(col, justify="left" if col in ("step", "from") else "right")
    for step, rs in sorted(per.items(), key=lambda kv: natural_key(kv[0])):
        tbl.add_row(Text(step), *(Text(f) for f in figures(rs)))
    return line, tbl


def metrics_table(store: Store, run: RunRecord) -> Table | None:
    series = _series(store, run, None)
    params: dict[str, dict[str, Any]] = defaultdict(dict)
    for p in store.select(ParamRecord, run_id=run.id):
        params[p.task_id][p.name] = p.value
    return render_metrics({k: [p.value for p in pts] for k, pts in series.items()}, params)


def render_metrics(series: dict[tuple[str, str], list[float]],
                   params: dict[str, dict[str, Any]]) -> Table | None:
    """The table ``insitu show`` prints of (task, metric) -> values in order, and each
    task's logged params; None when there are neither (a server's run's come from its
    API's metrics route)."""
    if not series and not params:
        return None
    tbl = Table(title="logged metrics and params", title_justify="left")
    for col in ("step", "metric", "last", "min", "max", "points"):
        tbl.add_column(col, justify="left" if col in ("step", "metric") else "right")
    for (task, name), vals in sorted(series.items(),
                                     key=lambda kv: (natural_key(kv[0][0]), kv[0][1])):
        tbl.add_row(Text(task), Text(name), f"{vals[-1]:.6g}", f"{min(vals):.6g}",
                    f"{max(vals):.6g}", str(len(vals)))
    for task, ps in sorted(params.items(), key=lambda kv: natural_key(kv[0])):
        tbl.add_row(Text(task), "params",
                    Text(", ".join(f"{k}={v}" for k, v in sorted(ps.items()))), "", "", "")
    return tbl


def _check_step(store: Store, run: RunRecord, step: str | None) -> None:
    if step is None:
        return
    tasks = store.list_tasks(run.id)
    if step not in {t.step_id for t in tasks} | {t.id for t in tasks}:
        raise not_found("step", step, {t.step_id for t in tasks}, where=f"run {run.id}")


@click.command()
@click.argument("run_id")
@click.argument("step", required=False)
@click.option("--name", "names", multiple=True, help="Only these metrics (repeatable).")
@click.option("--png", type=click.Path(dir_okay=False), default=None,
              help="Write the plot to this PNG file instead of the terminal.")
def metrics(run_id: str, step: str | None, names: tuple[str, ...], png: str | None) -> None:
    """Plot the metrics a run's steps logged (in the terminal, or to a PNG)."""
    store = _store()
    if png is not None:
        check_output(png, "--png")
    run = store.get_run(run_id)
    _check_step(store, run, step)
    every = _series(store, run, step)
    known = {k[1] for k in every}
    for n in names:
        if known and n not in known:
            raise not_found("metric", n, known, where=f"run {run.id}"
                            + (f" step {step}" if step else ""))
    series = {k: v for k, v in every.items() if not names or k[1] in names}
    if not series:
        console.print(f"run {run.id} logged no metrics"
                      + (f" in step {esc(step)}" if step else "")
                      + (f" named {esc(', '.join(names))}" if names else "")
                      + " (log them with insitu.log_metric inside a step)")
        return
    by_metric: dict[str, list[tuple[str, list[MetricRecord]]]] = defaultdict(list)
    for (task, name), pts in sorted(series.items(),
                                    key=lambda kv: (kv[0][1], natural_key(kv[0][0]))):
        by_metric[name].append((task, pts))
    if png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(len(by_metric), 1, figsize=(8, 3 * len(by_metric)),
                                 squeeze=False)
        for ax, (name, lines) in zip(axes[:, 0], by_metric.items(), strict=True):
            for task, pts in lines:
                ax.plot([p.step for p in pts], [p.value for p in pts], marker=".", label=task)
            ax.set_title(name)
            ax.set_xlabel("step")
            ax.legend(fontsize="small")
        fig.tight_layout()
        import io

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        write_bytes(png, buf.getvalue())
        console.print(f"wrote {esc(png)}")
        return
    import importlib

    ptx: Any = importlib.import_module("plotext")
    width = min(console.width, 100)
    for name, lines in by_metric.items():
        ptx.clear_figure()
        ptx.plotsize(width, 15)
        ptx.theme("clear")
        for task, pts in lines:
            ptx.plot([p.step for p in pts], [p.value for p in pts], label=task)
        ptx.title(f"{name}  (run {run.id})")
        console.print(Text.from_ansi(ptx.build()))


@click.command()
@click.argument("run_ids", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def compare(run_ids: tuple[str, ...], as_json: bool) -> None:
    """Parameters and final metrics of several runs side by side; differences marked *."""
    store = _store()
    runs = [store.get_run(r) for r in run_ids]
    rows: dict[str, list[Any]] = {}

    def put(key: str, i: int, value: Any) -> None:
        rows.setdefault(key, [None] * len(runs))[i] = value

    for i, run in enumerate(runs):
        put("pipeline", i, run.pipeline)
        put("state", i, run.state)
        for k, v in run.params.items():
            put(f"param {k}", i, v)
        for p in store.select(ParamRecord, run_id=run.id):
            put(f"param {p.task_id}.{p.name}", i, p.value)
        for (task, name), pts in _series(store, run, None).items():
            put(f"metric {task}.{name}", i, pts[-1].value)
    if as_json:
        click.echo(json.dumps({"runs": [r.id for r in runs], "rows": rows}, indent=2,
                              default=str))
        return
    tbl = Table(title="* marks rows that differ", title_justify="left")
    tbl.add_column("", overflow="fold")
    for r in runs:
        tbl.add_column(r.id, justify="right")
    for key, vals in rows.items():
        differs = len({json.dumps(v, sort_keys=True, default=str) for v in vals}) > 1
        cells = [("-" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v))
                 for v in vals]
        style = "bold yellow" if differs else ""
        tbl.add_row(Text(("* " if differs else "  ") + key),
                    *(Text(c, style=style) for c in cells))
    console.print(tbl)
