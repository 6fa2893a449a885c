"""Tables, JSON and the PNG plot of simulation results (matplotlib is imported lazily)."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path

from insitu.errors import UserError
from insitu.scheduler._sim import PackingResult


def summarise(results: Sequence[PackingResult]) -> dict[str, dict[str, float]]:
    """Per policy: mean share, mean unallocated milli-GPU, mean placements per second."""
    by: dict[str, list[PackingResult]] = {}
    for r in results:
        by.setdefault(r.policy, []).append(r)
    return {p: {"share": statistics.fmean(r.share for r in rs),
                "unallocated_milli": statistics.fmean(r.unallocated_milli for r in rs),
                "placements_per_s": statistics.fmean(r.rate for r in rs),
                "seeds": len(rs)}
            for p, rs in by.items()}


def packing_table(rows: Mapping[str, Mapping[str, Mapping[str, float]]], policies: Sequence[str],
                  bounds: Mapping[str, float] | None = None,
                  offline: Mapping[str, float] | None = None) -> str:
    """A plain-text table: one row per variant, one column per policy (mean allocated share),
    then the best offline packing found and the upper bound, which bracket the limit."""
    head = ["variant"] + list(policies) + (["offline"] if offline else []) + \
        (["bound"] if bounds else [])
    versus = [b for b in ("fgd",) if "insitu" in policies and b in policies]
    head += [f"unalloc vs {b}" for b in versus]
    lines = []
    for v, summ in rows.items():
        cells = [v] + [f"{summ[p]['share'] * 100:.2f}%" if p in summ else "-" for p in policies]
        if offline:
            cells.append(f"{offline[v] * 100:.2f}%" if v in offline else "-")
        if bounds:
            cells.append(f"{bounds[v] * 100:.2f}%" if v in bounds else "-")
        for name in versus:
            a, b = summ.get("insitu"), summ.get(name)
            if a and b and b["unallocated_milli"] > 0:
                cells.append(f"{(a['unallocated_milli'] / b['unallocated_milli'] - 1) * 100:+.1f}%")
            else:
                cells.append("-")
        lines.append(cells)
    widths = [max(len(str(r[i])) for r in [head, *lines]) for i in range(len(head))]
    fmt = "  ".join(("{:<%s}" if i == 0 else "{:>%s}").replace("%s", str(w))
                    for i, w in enumerate(widths))
    out = [fmt.format(*head), fmt.format(*["-" * w for w in widths])]
    out += [fmt.format(*r) for r in lines]
    return "\n".join(out)


def plot_curves(curves: Mapping[str, Sequence[tuple[float, float]]], path: str | Path, *,
                title: str, xlabel: str = "arrived workload (share of GPU capacity)",
                ylabel: str = "allocated share of GPU capacity",
                bound: Sequence[tuple[float, float]] = ()) -> None:
    """One line per policy; ``bound`` (arrived, upper bound) points are drawn dashed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - matplotlib is a dependency
        raise UserError("plotting needs matplotlib", hint="pip install matplotlib") from e
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, pts in curves.items():
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, label=name, lw=2 if name == "insitu" else 1)
    if bound:
        bx, by = zip(*bound, strict=True)
        ax.plot(bx, by, "k--", marker="o", ms=3, lw=1, label="upper bound (any policy)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, dpi=110, format="png")
    plt.close(fig)
    try:  # written in one go, so a full disk is an error here, not a silent short file
        with open(path, "wb", buffering=0) as f:
            f.write(buf.getvalue())
    except OSError as e:
        raise UserError(f"could not write the plot to {path}: {e.strerror or e}",
                        hint="free space on that disk or give another path") from None


def mean_curve(results: Sequence[PackingResult]) -> list[tuple[float, float]]:
    """Average curves of several seeds point by point (they have the same number of points)."""
    n = min(len(r.curve) for r in results)
    return [(statistics.fmean(r.curve[k][0] for r in results),
             statistics.fmean(r.curve[k][1] for r in results)) for k in range(n)]
