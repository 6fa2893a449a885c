"""Reading openb-style traces (node list and task list CSVs) into nodes and requests.

The only module of the package that reads files; the scheduler itself never does I/O. Every bad
row is reported as ``file:row: field 'x' ...`` with the fix.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from insitu.errors import UserError
from insitu.scheduler._model import Gpu, Node, Request

MiB = 1024**2


class TraceError(UserError, ValueError):
    """A trace file is missing, malformed, or names something the cluster does not have."""


@dataclass(frozen=True, kw_only=True)
class Task:
    """One task of a trace: its request and, when the trace has them, its times (seconds)."""

    request: Request
    created: float | None = None
    deleted: float | None = None
    qos: str = ""


def _rows(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    if not path.is_file():
        raise TraceError(f"trace file {path} does not exist",
                         hint="give the path of an openb CSV, e.g. "
                              "data/openb/openb_pod_list_default.csv")
    try:
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            cols = reader.fieldnames or []
            missing = [c for c in required if c not in cols]
            if missing:
                raise TraceError(f"{path}: missing column(s) {', '.join(missing)} "
                                 f"(found: {', '.join(cols) or 'none'})",
                                 hint=f"the header must include {', '.join(required)}")
            return [(k + 2, row) for k, row in enumerate(reader)]
    except UnicodeDecodeError as e:
        raise TraceError(f"{path} is not a text CSV file (byte {e.start} is not UTF-8)",
                         hint="give the path of an openb CSV, e.g. "
                              "data/openb/openb_node_list_gpu_node.csv") from None
    except csv.Error as e:
        raise TraceError(f"{path} is not a CSV file this can read ({e})",
                         hint="give the path of an openb CSV") from None


def _num(path: Path, line: int, row: dict[str, str], field: str, *, minimum: float = 0,
         default: float | None = None) -> float:
    raw = (row.get(field) or "").strip()
    if raw == "" and default is not None:
        return default
    try:
        v = float(raw)
    except ValueError:
        v = math.nan
    if not math.isfinite(v) or v < minimum:
        raise TraceError(f"{path}:{line}: field '{field}' is {raw!r}, not a number >= {minimum:g}",
                         hint=f"fix row {line} of {path.name}")
    return v


def load_nodes(path: str | Path, *, gpu_only: bool = False) -> list[Node]:
    """Nodes from a CSV with columns ``sn, cpu_milli, memory_mib, gpu, model``."""
    p = Path(path)
    nodes = []
    for line, row in _rows(p, ("sn", "cpu_milli", "memory_mib", "gpu", "model")):
        name = (row.get("sn") or "").strip()
        if not name:
            raise TraceError(f"{p}:{line}: field 'sn' (node name) is empty",
                             hint=f"give every node of {p.name} a name")
        cpu = _num(p, line, row, "cpu_milli", minimum=1)
        mem = _num(p, line, row, "memory_mib", minimum=1)
        ngpu = _num(p, line, row, "gpu", default=0)
        if ngpu != int(ngpu):
            raise TraceError(f"{p}:{line}: field 'gpu' is {ngpu:g}, not a whole number",
                             hint="give the node's GPU count")
        model = (row.get("model") or "").strip()
        if ngpu and not model:
            raise TraceError(f"{p}:{line}: node {name} has {int(ngpu)} GPUs but no 'model'",
                             hint="give the GPU model, e.g. T4 or V100M32")
        if gpu_only and not ngpu:
            continue
        nodes.append(Node(name=name, cpu=cpu / 1000, memory=int(mem * MiB),
                          gpus=tuple(Gpu(model=model) for _ in range(int(ngpu)))))
    if not nodes:
        raise TraceError(f"{p}: no nodes", hint="the node list needs at least one row")
    return nodes


def load_tasks(path: str | Path, *, models: set[str] | None = None) -> list[Task]:
    """Tasks from an openb pod list (``cpu_milli, memory_mib, num_gpu, gpu_milli``, optionally
    ``gpu_spec``, ``creation_time``, ``deletion_time``, ``qos``, and ``gang`` + ``gang_size``
    and ``priority`` where a trace has them). ``models``: the cluster's GPU models, to reject a
    ``gpu_spec`` that names none of them."""
    p = Path(path)
    tasks = []
    for line, row in _rows(p, ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli")):
        name = (row.get("name") or "").strip() or f"row-{line}"
        cpu = _num(p, line, row, "cpu_milli")
        mem = _num(p, line, row, "memory_mib")
        ngpu = _num(p, line, row, "num_gpu")
        milli = _num(p, line, row, "gpu_milli", default=0)
        if ngpu != int(ngpu):
            raise TraceError(f"{p}:{line}: field 'num_gpu' is {ngpu:g}, not a whole number",
                             hint="give a whole GPU count; fractions go in gpu_milli")
        if milli > 1000:
            raise TraceError(f"{p}:{line}: field 'gpu_milli' is {milli:g}, more than one GPU",
                             hint="gpu_milli is the share of one GPU, 1 to 1000")
        spec = tuple(s for s in (row.get("gpu_spec") or "").strip().split("|") if s)
        if models is not None:
            unknown = [s for s in spec if s not in models]
            if unknown:
                raise TraceError(
                    f"{p}:{line}: field 'gpu_spec' names unknown GPU type "
                    f"{', '.join(unknown)}", hint=f"use one of {', '.join(sorted(models))}")
        if ngpu == 0:
            gpu = 0.0
        elif ngpu == 1:
            gpu = (milli or 1000) / 1000
        else:
            gpu = float(ngpu)
        created = _num(p, line, row, "creation_time", default=-1)
        deleted = _num(p, line, row, "deletion_time", default=-1)
        gang = (row.get("gang") or "").strip() or None
        size = _num(p, line, row, "gang_size", minimum=1, default=1)
        prio = _num(p, line, row, "priority", minimum=-1e9, default=0)
        if size != int(size) or prio != int(prio):
            raise TraceError(f"{p}:{line}: fields 'gang_size' and 'priority' must be whole "
                             f"numbers, not {size:g} and {prio:g}",
                             hint=f"fix row {line} of {p.name}")
        req = Request(name=name, cpu=cpu / 1000, memory=int(mem * MiB), gpu=gpu,
                      gpu_types=spec, gang=gang, gang_size=int(size) if gang else 1,
                      priority=int(prio))
        tasks.append(Task(request=req, created=None if created < 0 else created,
                          deleted=None if deleted < 0 else deleted,
                          qos=(row.get("qos") or "").strip()))
    return tasks
