"""Online simulation: tasks arrive at their creation time, run for their recorded duration
(deletion minus creation), and wait in queues (one per QoS class of the trace) when nothing fits.

The openb trace at its own pace keeps the cluster under 1% busy, so the load can be set instead:
``load=0.9`` compresses the arrival times (durations stay) as far as possible while the *offered
load*, the peak GPU the tasks ask for (as if each started on arrival), stays at most 90% of the
cluster's GPU capacity. Then all the work always fits in the GPUs on paper, and whatever waits,
waits because of how the policy packed it (fragmentation, CPU, memory), or for priority.
``cycles`` replays the trace several times in a row: more arrivals and departures to measure.
(A mean-over-the-window definition is not used: openb's GPU-time is dominated by a few tasks that
run for months, so a load set on the mean piles up far past the capacity late in the run.)

QoS classes become priorities (``Guaranteed`` 3, ``LS`` 2, ``Burstable`` 1,
``BE`` 0; best-effort work is restartable), so higher classes may preempt lower ones; an evicted
task waits again and restarts from the beginning. Gangs come from the trace when it has them
(``gang``/``gang_size`` columns).

Reports GPU utilisation over time, queueing delay p50/p99 (first start), each queue's share of
GPU-time and the preemptions. Deterministic for a seed: no clock is read for the simulation.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from insitu.errors import ResourceError
from insitu.scheduler._model import Node
from insitu.scheduler._queues import Queue, QueueScheduler
from insitu.scheduler._state import ClusterState
from insitu.scheduler._trace import Task, TraceError
from insitu.scheduler._workload import Workload

#: priority of each QoS class of the openb trace (others: 0)
QOS_PRIORITY = {"Guaranteed": 3, "LS": 2, "Burstable": 1, "BE": 0}


def offered_load(tasks: Sequence[Task], capacity_milli: int, speedup: float = 1.0) -> float:
    """The peak GPU the tasks ask for, as a share of capacity, with arrivals ``speedup`` x
    faster (durations kept): the most milli-GPU asked at any moment if every task started on
    arrival and ran its recorded duration. Below 1, all the work fits in the GPU capacity at
    every moment; whatever waits, waits for fragmentation, CPU or memory, or a reservation."""
    return _peak(_columns(tasks), capacity_milli, speedup)


def _columns(tasks: Sequence[Task]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arrival, duration and milli-GPU of the timed tasks."""
    timed = [t for t in tasks if t.created is not None and t.deleted is not None]
    c = np.array([t.created or 0.0 for t in timed], dtype=np.float64)
    d = np.array([max(0.0, (t.deleted or 0.0) - (t.created or 0.0)) for t in timed])
    g = np.array([t.request.total_gpu_milli for t in timed], dtype=np.float64)
    return c, d, g


def _peak(cols: tuple[np.ndarray, np.ndarray, np.ndarray], capacity_milli: int,
          speedup: float) -> float:
    c, d, g = cols
    if not len(c) or capacity_milli <= 0:
        return 0.0
    start = c / speedup
    times = np.concatenate([start + d, start])
    delta = np.concatenate([-g, g])
    order = np.lexsort((delta, times))  # at the same moment, ends come before starts
    return float(np.cumsum(delta[order]).max(initial=0.0)) / capacity_milli


def speedup_for_load(tasks: Sequence[Task], capacity_milli: int, load: float) -> float:
    """The largest arrival speed-up at which :func:`offered_load` stays at most ``load``
    (bisection; the peak grows, in steps, as arrivals are compressed)."""
    cols = _columns(tasks)
    top = _peak(cols, capacity_milli, 1e12)
    if load >= top:
        raise TraceError(
            f"this trace cannot offer a peak of {load:.0%} of the GPU capacity by compressing "
            f"arrivals: with every task arriving at once it asks for {top:.1%}",
            hint=f"replay it more times in a row (cycles), or ask for less than {top:.2f}")
    lo, hi = 1e-6, 1e12
    if _peak(cols, capacity_milli, lo) > load:
        raise TraceError(f"this trace already asks for more than {load:.0%} of the GPU capacity "
                         "at its own pace", hint="ask for a higher load, or use --speedup")
    for _ in range(200):
        mid = (lo * hi) ** 0.5
        if _peak(cols, capacity_milli, mid) <= load:
            lo = mid
        else:
            hi = mid
        if hi / lo < 1 + 1e-6:
            break
    return lo


def replay(tasks: Sequence[Task], cycles: int) -> list[Task]:
    """The timed ``tasks`` ``cycles`` times in a row, each copy shifted by the arrival window
    (gangs renamed per copy)."""
    timed = [t for t in tasks if t.created is not None and t.deleted is not None]
    if cycles <= 1 or not timed:
        return timed
    t0, t1 = (min(t.created or 0.0 for t in timed), max(t.created or 0.0 for t in timed))
    period = max(t1 - t0, 1.0)
    return [replace(t, created=(t.created or 0.0) + c * period,
                    deleted=(t.deleted or 0.0) + c * period,
                    request=t.request if t.request.gang is None or c == 0 else
                    replace(t.request, gang=f"{t.request.gang}#{c}"))
            for c in range(cycles) for t in timed]


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
    speedup: float = 1.0  # arrival times were divided by this
    offered: float = 0.0  # peak offered load after the speed-up (see offered_load)
    preemptions: int = 0  # evictions (each evicted task waits again)
    delay_by_queue: dict[str, tuple[float, float]] = field(default_factory=dict)  # p50, p99
    delay_mean: float = 0.0
    delay_max: float = 0.0
    peak_utilisation: float = 0.0  # the most GPU allocated at once, as a share of capacity


def run_online(nodes: Sequence[Node], tasks: Sequence[Task], *, policy: str, seed: int = 42,
               points: int = 200, speedup: float = 1.0, load: float | None = None,
               cycles: int = 1, reserve_after: int = 3) -> OnlineResult:
    """Replay ``tasks``; ``speedup`` divides the arrival times (durations stay), raising load;
    ``load`` instead sets the offered load (see the module docstring) and picks the speed-up;
    ``cycles`` replays the trace that many times in a row (gangs renamed per cycle)."""
    timed = [t for t in tasks if t.created is not None and t.deleted is not None]
    if not timed:
        raise TraceError("the trace has no creation_time/deletion_time columns",
                         hint="online mode needs task times; use --mode packing for this trace")
    if cycles < 1:
        raise ResourceError(f"cycles must be at least 1, not {cycles}",
                            hint="give how many times to replay the trace, e.g. 5")
    timed = replay(timed, cycles)
    if load is not None:
        if not load > 0:
            raise ResourceError(f"load must be > 0, not {load}",
                                hint="give the offered load as a share of GPU capacity, e.g. 0.9")
        if speedup != 1.0:
            raise ResourceError("give either load or speedup, not both",
                                hint="load=0.9 picks the speed-up that offers 90% of capacity")
        speedup = speedup_for_load(timed, ClusterState(nodes, policy="first_fit").gpu_capacity,
                                   load)
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
    qs = QueueScheduler(cluster, [Queue(name=q) for q in qnames], reserve_after=reserve_after)
    # (time, kind 0=end 1=arrive, task index, attempt): an end of an evicted attempt is stale
    events: list[tuple[float, int, int, int]] = []
    reqs = []
    for k, t in enumerate(timed):
        prio = QOS_PRIORITY.get(t.qos, 0)
        r = replace(t.request, name=f"t{k}", queue=t.qos or "default",
                    priority=t.request.priority or prio,
                    restartable=t.request.restartable or t.qos == "BE")
        reqs.append(r)
        heapq.heappush(events, (t.created or 0.0, 1, k, 0))
    attempt = [0] * len(reqs)
    first_start: dict[str, float] = {}
    preemptions = 0
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
            _, kind, k, att = heapq.heappop(events)
            name = reqs[k].name
            if kind == 0:
                if name in qs.running and att == attempt[k]:
                    qs.finish(name)
            else:
                qs.submit(reqs[k])
        for d in qs.schedule():
            for v in d.preempted:
                attempt[int(v[1:])] += 1  # its pending end is stale; it restarts later
                preemptions += 1
            if d.placed:
                n = d.request.name
                k = int(n[1:])
                if n not in first_start:
                    first_start[n] = now
                    delays.append(now - arrival[n])
                heapq.heappush(events, (now + duration[n], 0, k, attempt[k]))
        if now <= t_last_arrival:
            samples.append(((now - t_start) / 3600, cluster.allocated_gpu_milli() / cap))
    span = max(1e-9, t_last_arrival - t_start)
    total_gt = sum(gpu_time.values()) or 1.0
    step = max(1, len(samples) // points)
    dl = np.array(delays) if delays else np.zeros(1)
    by_queue: dict[str, tuple[float, float]] = {}
    for q in qnames:
        qd = [first_start[r.name] - arrival[r.name] for r in reqs
              if r.queue == q and r.name in first_start]
        if qd:
            by_queue[q] = (float(np.percentile(qd, 50)), float(np.percentile(qd, 99)))
    return OnlineResult(policy=policy, tasks=len(reqs), started=len(delays),
                        mean_utilisation=area / span / cap,
                        delay_p50=float(np.percentile(dl, 50)),
                        delay_p99=float(np.percentile(dl, 99)),
                        waited=int((dl > 0).sum()) if delays else 0,
                        queue_share={q: v / total_gt for q, v in gpu_time.items()},
                        curve=tuple(samples[::step]), seconds=time.perf_counter() - t0,
                        speedup=speedup, offered=offered_load(timed, cap),
                        preemptions=preemptions, delay_by_queue=by_queue,
                        delay_mean=float(dl.mean()), delay_max=float(dl.max()),
                        peak_utilisation=max((u for _, u in samples), default=0.0))
