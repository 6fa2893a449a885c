"""Online simulation: tasks arrive at their creation time, run for their recorded duration
(deletion minus creation), and wait in queues (one per QoS class of the trace) when nothing fits.

Reports GPU utilisation over time, queueing delay p50/p99 and each queue's share of GPU-time.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from insitu.scheduler._model import Node
from insitu.scheduler._queues import Queue, QueueScheduler
from insitu.scheduler._state import ClusterState
from insitu.scheduler._trace import Task, TraceError
from insitu.scheduler._workload import Workload


@dataclass(frozen=True, kw_only=True)
class OnlineResult:
    policy: str
    tasks: int
    started: int
    mean_utilisation: float  # allocated share of GPU capacity, averaged over the arrival window
    delay_p50: float  # seconds from arrival to start
    delay_p99: float
    waited: int  # tasks that did not start on arrival
    queue_share: dict[str, float]  # share of the GPU-time used, per queue
    curve: tuple[tuple[float, float], ...]  # (time in hours, allocated GPU share)
    seconds: float


def run_online(nodes: Sequence[Node], tasks: Sequence[Task], *, policy: str, seed: int = 42,
               points: int = 200, speedup: float = 1.0) -> OnlineResult:
    """Replay ``tasks``; ``speedup`` divides the arrival times (durations stay), raising load."""
    timed = [t for t in tasks if t.created is not None and t.deleted is not None]
    if not timed:
        raise TraceError("the trace has no creation_time/deletion_time columns",
                         hint="online mode needs task times; use --mode packing for this trace")
    if speedup != 1.0:
        timed = [replace(t, created=(t.created or 0.0) / speedup,
                         deleted=(t.created or 0.0) / speedup
                         + ((t.deleted or 0.0) - (t.created or 0.0))) for t in timed]
    timed = sorted(timed, key=lambda t: (t.created or 0.0))
    t_start = timed[0].created or 0.0
    cluster = ClusterState(nodes, policy=policy, seed=seed,
                           workload=Workload.from_requests([t.request for t in timed]))
    cluster.explain_pending = False
    qnames = sorted({t.qos or "default" for t in timed})
    qs = QueueScheduler(cluster, [Queue(name=q) for q in qnames])
    events: list[tuple[float, int, int]] = []  # (time, kind 0=end 1=arrive, task index)
    reqs = []
    for k, t in enumerate(timed):
        r = replace(t.request, name=f"t{k}", queue=t.qos or "default")
        reqs.append(r)
        heapq.heappush(events, (t.created or 0.0, 1, k))
    arrival = {r.name: (timed[k].created or 0.0) for k, r in enumerate(reqs)}
    duration = {r.name: max(0.0, (timed[k].deleted or 0.0) - (timed[k].created or 0.0))
                for k, r in enumerate(reqs)}
    delays: list[float] = []
    gpu_time = dict.fromkeys(qnames, 0.0)
    cap = max(1, cluster.gpu_capacity)
    samples: list[tuple[float, float]] = []
    area = 0.0
    t_last_arrival = max(t.created or 0.0 for t in timed)
    last_t = t_start
    t0 = time.perf_counter()
    while events:
        now = events[0][0]
        alloc = cluster.allocated_gpu_milli()
        area += alloc * max(0.0, min(now, t_last_arrival) - last_t)
        for q in qnames:
            gpu_time[q] += qs.usage[q]["gpu"] * (now - last_t)
        last_t = now
        while events and events[0][0] == now:
            _, kind, k = heapq.heappop(events)
            name = reqs[k].name
            if kind == 0:
                if name in qs.running:
                    qs.finish(name)
            else:
                qs.submit(reqs[k])
        for d in qs.schedule():
            if d.placed:
                n = d.request.name
                delays.append(now - arrival[n])
                heapq.heappush(events, (now + duration[n], 0, int(n[1:])))
        if now <= t_last_arrival:
            samples.append(((now - t_start) / 3600, cluster.allocated_gpu_milli() / cap))
    span = max(1e-9, t_last_arrival - t_start)
    total_gt = sum(gpu_time.values()) or 1.0
    step = max(1, len(samples) // points)
    dl = np.array(delays) if delays else np.zeros(1)
    return OnlineResult(policy=policy, tasks=len(reqs), started=len(delays),
                        mean_utilisation=area / span / cap,
                        delay_p50=float(np.percentile(dl, 50)),
                        delay_p99=float(np.percentile(dl, 99)),
                        waited=int((dl > 0).sum()) if delays else 0,
                        queue_share={q: v / total_gt for q, v in gpu_time.items()},
                        curve=tuple(samples[::step]), seconds=time.perf_counter() - t0)
