"""A distributed step's gang on an executor: one process per rank, ended as one attempt.

Contract (any executor may use it; the local one does):

- :func:`rank_requests` turns a gang's :class:`LaunchRequest` (``req.ranks`` set) into one
  request per rank, each with the rendezvous environment (``MASTER_ADDR``, ``MASTER_PORT``,
  ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``), its own GPUs, memory
  limit, log files and result file (:func:`rank_path`; rank 0 keeps the attempt's own, so
  the attempt's result is rank 0's). All ranks append to the attempt's one metrics journal,
  each line marked with its rank.
- :class:`Gang` collects the ranks' exits. A gang lives or dies whole: once a rank fails,
  :meth:`Gang.add` returns the ranks still running, which the executor stops. When every
  rank has ended, :meth:`Gang.exit` is the gang's one :class:`AttemptExit`: rank 0's
  result when all succeeded; else the cause's (``failed_rank``), chosen as the first rank to
  fail by the strongest cause (out of memory, then a death, then an error in user code, then
  a collective that gave up waiting for its peers, which is a symptom of another rank), with
  every rank's record in ``ranks``. A gang whose ranks only timed out in a collective lost
  the ranks that never came: it ends as lost (restartable), naming them.
"""

from __future__ import annotations

import dataclasses
import socket
from typing import Any

from insitu.executor._base import AttemptExit, LaunchRequest

# the marks of a collective that failed because a peer went away or never came
_COLLECTIVE_TYPES = ("torch.distributed.DistError", "torch.distributed.DistBackendError",
                     "torch.distributed.DistNetworkError")
_COLLECTIVE_WORDS = ("connection closed by peer", "connection reset by peer", "timed out",
                     "timeout", "broken pipe", "socket closed", "nccl communicator was aborted")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (the rendezvous port of rank 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def rank_path(path: str, rank: int) -> str:
    """Rank ``rank``'s copy of an attempt's file: rank 0 keeps ``path``; rank 2 of
    ``t.1.out`` is ``t.1.rank2.out``."""
    if rank == 0 or not path:
        return path
    head, dot, ext = path.rpartition(".")
    return f"{head}.rank{rank}.{ext}" if dot and "/" not in ext else f"{path}.rank{rank}"


def rank_requests(req: LaunchRequest, *, master_addr: str = "127.0.0.1",
                  master_port: int | None = None) -> list[LaunchRequest]:
    """One request per rank of the gang ``req`` (see the module doc)."""
    port = master_port or free_port(master_addr)
    world = len(req.ranks)
    per_node: dict[str, int] = {}
    for r in req.ranks:
        per_node[r["node"]] = per_node.get(r["node"], 0) + 1
    seen: dict[str, int] = {}
    out = []
    for r in req.ranks:
        rank, node = int(r["rank"]), str(r["node"])
        local = seen.get(node, 0)
        seen[node] = local + 1
        env = {**req.env, "MASTER_ADDR": master_addr, "MASTER_PORT": str(port),
               "RANK": str(rank), "LOCAL_RANK": str(local), "WORLD_SIZE": str(world),
               "LOCAL_WORLD_SIZE": str(per_node[node]),
               "INSITU_COLLECTIVE_TIMEOUT": str(req.collective_timeout or 300.0)}
        out.append(dataclasses.replace(
            req, key=f"{req.key}@{rank}", node=node, gpu_ids=tuple(r.get("gpu_ids") or ()),
            env=env, rank=rank, ranks=req.ranks,
            result_path=rank_path(req.result_path, rank),
            stdout_path=rank_path(req.stdout_path, rank),
            stderr_path=rank_path(req.stderr_path, rank)))
    return out


def _collective(res: dict[str, Any] | None) -> bool:
    """Did this rank fail inside a collective because of its peers?"""
    err = (res or {}).get("error") or {}
    if err.get("kind") != "user":
        return False
    if set(err.get("mro") or ()) & set(_COLLECTIVE_TYPES):
        return True
    text = f"{err.get('type', '')}: {err.get('message', '')}".lower()
    return any(w in text for w in _COLLECTIVE_WORDS) and (
        "gloo" in text or "nccl" in text or "dist" in text or "peer" in text
        or "collective" in text or "store" in text or "process group" in text)


def _ok(ex: AttemptExit) -> bool:
    return bool(ex.result and ex.result.get("ok")) and ex.exit_code == 0 and not ex.oom_killed


class Gang:
    """The ranks of one gang attempt while they run (see the module doc)."""

    def __init__(self, req: LaunchRequest, ranks: list[LaunchRequest]) -> None:
        self.req = req
        self.members = {r.key: r for r in ranks}
        self.exits: dict[int, AttemptExit] = {}
        self.stopped: set[int] = set()     # ranks stopped because another one failed
        self.cancelled = False             # the engine cancelled the whole gang
        self.first_failure: int | None = None
        self.running_at_failure: tuple[int, ...] = ()

    @property
    def keys(self) -> list[str]:
        return list(self.members)

    def rank_of(self, key: str) -> int:
        rank = self.members[key].rank
        assert rank is not None
        return rank

    def add(self, ex: AttemptExit) -> list[str]:
        """A rank ended; returns the keys of the ranks to stop now (all still running once
        one failed)."""
        rank = self.rank_of(ex.key)
        self.exits[rank] = ex
        if _ok(ex) or self.cancelled or self.first_failure is not None:
            return []
        self.first_failure = rank
        running = [k for k, m in self.members.items() if m.rank not in self.exits]
        self.running_at_failure = tuple(self.rank_of(k) for k in running)
        self.stopped.update(self.running_at_failure)
        return running

    @property
    def done(self) -> bool:
        return len(self.exits) == len(self.members)

    def _record(self, rank: int, ex: AttemptExit) -> dict[str, Any]:
        m = next(m for m in self.members.values() if m.rank == rank)
        err = ((ex.result or {}).get("error") or {}) if not _ok(ex) else {}
        if _ok(ex):
            state = "succeeded"
        elif rank in self.stopped and (ex.cancelled or ex.signal):
            state = "stopped"
        elif ex.cancelled:
            state = "cancelled"
        else:
            state = "failed"
        rec: dict[str, Any] = {
            "rank": rank, "node": ex.node or m.node, "pid": ex.pid, "state": state,
            "exit_code": ex.exit_code, "signal": ex.signal, "peak_memory": ex.peak_memory,
            "memory_limit": m.memory_limit, "cpu_time": ex.cpu_time, "oom": ex.oom_killed,
            "started_at": ex.started_at, "ended_at": ex.ended_at,
            "stdout": m.stdout_path, "stderr": m.stderr_path}
        if err:
            rec["error"] = {k: err.get(k) for k in ("kind", "type", "message", "file", "line")
                            if err.get(k) is not None}
            if _collective(ex.result):
                rec["collective"] = True
        return rec

    def _cause(self) -> int | None:
        """The rank whose failure ended the gang (see the module doc), or None."""
        failed = [(r, ex) for r, ex in self.exits.items()
                  if not _ok(ex) and not (r in self.stopped and (ex.cancelled or ex.signal))
                  and not ex.cancelled]

        def strength(item: tuple[int, AttemptExit]) -> tuple[int, float]:
            _, ex = item
            res = ex.result
            err = (res or {}).get("error") or {}
            if ex.oom_killed or err.get("kind") == "oom":
                s = 0
            elif ex.timed_out:
                s = 1
            elif res is None:  # died without a word: killed, crashed, its node lost
                s = 2
            elif not _collective(res):
                s = 3
            else:
                s = 4
            return (s, ex.ended_at)

        if not failed:
            return None
        return min(failed, key=strength)[0]

    def exit(self) -> AttemptExit:
        """The gang's one exit, once every rank has ended."""
        assert self.done
        ranks = tuple(self._record(r, self.exits[r]) for r in sorted(self.exits))
        first = self.exits[0]
        t0 = min(ex.started_at for ex in self.exits.values())
        t1 = max(ex.ended_at for ex in self.exits.values())
        cpu = sum(ex.cpu_time or 0.0 for ex in self.exits.values())
        peak = max((ex.peak_memory or 0 for ex in self.exits.values()), default=0) or None
        common: dict[str, Any] = {"key": self.req.key, "started_at": t0, "ended_at": t1,
                                  "cpu_time": cpu, "ranks": ranks}
        if all(_ok(ex) for ex in self.exits.values()):
            return dataclasses.replace(first, peak_memory=peak, **common)
        cause = self._cause()
        if cause is None:  # nobody failed on its own: cancelled by the engine
            return dataclasses.replace(first, cancelled=True, result=None, peak_memory=peak,
                                       **common)
        ex = self.exits[cause]
        if _collective(ex.result):  # only collectives gave up: the missing ranks were lost
            missing = [r for r in self.running_at_failure if r != cause] or \
                [r for r in sorted(self.exits) if r != cause]
            who = ", ".join(str(r) for r in missing)
            err = (ex.result or {}).get("error") or {}
            timeout = self.req.collective_timeout
            reason = (f"rank{'s' if len(missing) > 1 else ''} {who} did not take part in a "
                      f"collective (timeout {timeout:g}s): rank {cause} gave up waiting "
                      f"({err.get('type')}: {str(err.get('message'))[:300]})")
            return dataclasses.replace(ex, pid=None, exit_code=None, signal=None, result=None,
                                       reason=reason, failed_rank=missing[0], **common)
        return dataclasses.replace(ex, failed_rank=cause, **common)


def is_gang(req: LaunchRequest) -> bool:
    return len(req.ranks) > 1


__all__ = ["Gang", "free_port", "is_gang", "rank_path", "rank_requests"]
