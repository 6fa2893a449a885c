"""Wait for the node that holds the data, or move the data: the engine's decision.

The scheduler places a task on the best node that has room *now*; when that node is not
one that holds the task's inputs (every holder is busy), :class:`WaitOrMove` weighs the
two ways on:

- moving: the bytes the chosen node lacks, beyond what the holder lacks, over the link
  bandwidth (``INSITU_LINK_MBIT``, default 1,000 Mbit/s, then what transfers in this
  run actually achieved);
- waiting: when the holder is expected to have room, from the attempts running there.
  An attempt of a step with finished attempts in this run is expected to take their
  median; one without (or one already past it) is expected to run as long again as it
  has run so far, so the estimate grows with a straggler and the task never stalls
  behind a node that will not free up. The k-th task waiting for the same holder waits
  for the k-th attempt to end.

The task waits when the wait is shorter than the move, and never longer in total than the
move would have taken. The decision is remade at every scheduling pass.
"""

from __future__ import annotations

import os
import statistics
from collections import defaultdict
from dataclasses import dataclass

from insitu._units import format_bytes, format_duration
from insitu.engine._placement import Placement, Placer, Request

DEFAULT_MBIT = 1000.0


@dataclass(frozen=True)
class Busy:
    """An attempt running on a node: its step and when it started."""

    node: str
    step: str
    started: float


class WaitOrMove:
    def __init__(self, placer: Placer) -> None:
        self.placer = placer
        mbit = float(os.environ.get("INSITU_LINK_MBIT") or DEFAULT_MBIT)
        self.bandwidth = mbit * 1e6 / 8       # bytes per second, updated from transfers
        self.durations: dict[str, list[float]] = defaultdict(list)
        self.since: dict[str, float] = {}     # task -> when it began waiting
        self.queued: dict[str, int] = {}      # holder -> tasks waiting for it (this pass)

    # -- what the run teaches -------------------------------------------------------
    def moved(self, nbytes: int, seconds: float) -> None:
        """A transfer of ``nbytes`` took ``seconds``: blend it into the bandwidth."""
        if nbytes >= 1 << 20 and seconds > 0:
            self.bandwidth = 0.7 * self.bandwidth + 0.3 * (nbytes / seconds)

    def finished(self, step: str, seconds: float) -> None:
        self.durations[step].append(seconds)

    def new_pass(self) -> None:
        self.queued = {}

    def placed(self, task: str) -> None:
        self.since.pop(task, None)

    # -- the decision ---------------------------------------------------------------
    def remaining(self, b: Busy, now: float) -> float:
        elapsed = max(0.0, now - b.started)
        done = self.durations.get(b.step)
        if done:
            median = statistics.median(done)
            if elapsed < median:
                return median - elapsed
        return elapsed  # no history, or a straggler: as long again as it has run

    def decide(self, task: str, req: Request, placement: Placement, busy: list[Busy],
               now: float) -> str | None:
        """None to run ``task`` where the scheduler placed it, or why it waits instead."""
        held = self.placer.held(req.inputs)
        total = sum(n for _, n in req.inputs)
        here = held.get(placement.node, 0)
        if not total or here == total:
            return None
        best: tuple[float, str, float, float] | None = None
        for node, has in held.items():
            if has <= here or not self.placer.could_host(node, req):
                continue
            move = (has - here) / self.bandwidth  # what going to the holder saves
            ends = sorted(self.remaining(b, now) for b in busy if b.node == node)
            if not ends:
                continue  # nothing runs there, yet it has no room: waiting would not help
            k = self.queued.get(node, 0)
            wait = ends[k % len(ends)] + (k // len(ends)) * max(ends)
            gain = move - wait
            if gain > 0 and (best is None or gain > best[0]):
                best = (gain, node, wait, move)
        if best is None:
            self.since.pop(task, None)
            return None
        _, node, wait, move = best
        waited = now - self.since.setdefault(task, now)
        if waited + wait >= move:  # waited as long as moving would take: move
            self.since.pop(task, None)
            return None
        self.queued[node] = self.queued.get(node, 0) + 1
        return (f"waiting for node '{node}', which holds {format_bytes(held[node])} of its "
                f"{format_bytes(total)} input: expected to have room in "
                f"~{format_duration(wait)}; moving the data to '{placement.node}' would take "
                f"~{format_duration(move)}")
