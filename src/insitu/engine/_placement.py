"""Placement of attempts, through :mod:`insitu.scheduler`, for the nodes an executor offers.

Contract: ``place(req, name)`` returns a :class:`Placement` and reserves it, or the
scheduler's plain-words reason why nothing fits now; ``release`` gives a placement back;
``impossible(req)`` explains a request that no node could ever satisfy (checked before a
run starts). The scheduler itself is pure; this adapter only translates records.

A step's placement constraints (``node_selector``, ``affinity``, ``anti_affinity``,
``tolerations``, ``priority``, ``spot``; see :func:`with_constraints`) go to the
scheduler as they are, except ``anti_affinity``, which becomes an affinity to the nodes
it leaves (every node carries its name as the label ``insitu.dev/node``). A node's zone
is also its label ``zone``, unless it has one.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from insitu._units import format_bytes
from insitu.executor import NodeInfo


@dataclass(frozen=True, kw_only=True)
class Request:
    cpu: float
    memory: int
    gpu: float = 0.0
    gpu_type: str | None = None
    inputs: tuple[tuple[str, int], ...] = ()   # (data id, bytes): shards and artifacts read
    restartable: bool = False  # may run on spot nodes (a step with retries survives a loss)
    node_selector: tuple[tuple[str, str], ...] = ()          # label = value, all of them
    affinity: tuple[tuple[str, tuple[str, ...]], ...] = ()   # label in values, all of them
    anti_affinity: tuple[tuple[str, tuple[str, ...]], ...] = ()  # label not in values
    tolerations: tuple[str, ...] = ()                        # "key=value:Effect"
    priority: int = 0


NODE_LABEL = "insitu.dev/node"


def with_constraints(req: Request, step: dict[str, Any]) -> Request:
    """``req`` with the placement constraints of a spec step (``step["constraints"]``).

    ``spot``: True lets the step run on spot nodes, False keeps it off them, absent
    leaves the default (spot nodes only for a step with retries).
    """
    c = step.get("constraints") or {}
    if not c:
        return req

    def rules(d: dict[str, Any] | None) -> tuple[tuple[str, tuple[str, ...]], ...]:
        return tuple(sorted((k, tuple(sorted(v))) for k, v in (d or {}).items()))

    spot = c.get("spot")
    return dataclasses.replace(
        req, node_selector=tuple(sorted((c.get("node_selector") or {}).items())),
        affinity=rules(c.get("affinity")), anti_affinity=rules(c.get("anti_affinity")),
        tolerations=tuple(c.get("tolerations") or ()), priority=int(c.get("priority") or 0),
        restartable=req.restartable if spot is None else bool(spot))


@dataclass(frozen=True, kw_only=True)
class Placement:
    node: str
    cpu: float
    memory: int
    gpu_ids: tuple[int, ...] = ()
    gpu_share: float = 0.0   # for a fractional request: the share of gpu_ids[0]
    ticket: Any = None       # the scheduler's placement, given back on release
    # a gang (a distributed step): one placement per rank, rank 0 first; the fields above
    # are rank 0's
    ranks: tuple[Placement, ...] = ()

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"node": self.node, "cpu": self.cpu, "memory": self.memory,
                                  "gpu_ids": list(self.gpu_ids), "gpu_share": self.gpu_share}
        if self.ranks:
            out["ranks"] = [{"rank": i, "node": p.node, "gpu_ids": list(p.gpu_ids)}
                            for i, p in enumerate(self.ranks)]
        return out


def _scheduler_node(n: NodeInfo) -> Any:
    from insitu.scheduler import Gpu, Node, Taint

    gpus = tuple(Gpu(model=g.model, memory=g.memory or 0) for g in
                 sorted(n.gpus, key=lambda g: g.index))
    labels = dict(n.labels)
    zone = labels.get("insitu.dev/zone", "")
    labels.setdefault(NODE_LABEL, n.name)
    if zone:
        labels.setdefault("zone", zone)
    # taints: "key=value:Effect" strings of a node that has them (none of today's
    # executors report any; a node record with a ``taints`` field is honoured)
    taints = tuple(Taint.parse(t) if isinstance(t, str) else t
                   for t in getattr(n, "taints", ()) or ())
    return Node(name=n.name, cpu=n.cpu, memory=n.memory, gpus=gpus, labels=labels,
                taints=taints, zone=zone,
                spot=labels.get("insitu.dev/spot", "").lower() in ("true", "1", "yes"))


class Placer:
    """One engine's view of the cluster: free resources and the attempts placed on it."""

    def __init__(self, nodes: list[NodeInfo]) -> None:
        from insitu.scheduler import ClusterState

        # a node with no CPU or memory to offer (a Ray head started with --num-cpus=0)
        # runs nothing: it is not a place for attempts
        self.infos = [n for n in nodes if n.cpu > 0 and n.memory > 0]
        nodes = self.infos
        self._gpu_index = {n.name: [g.index for g in sorted(n.gpus, key=lambda g: g.index)]
                           for n in nodes}
        self.models = sorted({g.model for n in nodes for g in n.gpus})
        self.cluster = ClusterState([_scheduler_node(n) for n in nodes])
        self._seq = 0
        self._others: list[Any] = []  # what other engines' attempts hold on these nodes
        self._holders: dict[str, set[str]] = {}       # data id -> nodes that hold it
        self._hosts: dict[tuple[str, Request], bool] = {}

    def _request(self, req: Request, name: str) -> Any:
        from insitu.scheduler import Request as SRequest

        types: tuple[str, ...] = ()
        if req.gpu_type:  # "A100" matches "NVIDIA A100-SXM4-80GB"
            want = req.gpu_type.lower()
            types = tuple(m for m in self.models if want in m.lower()) or (req.gpu_type,)
        from insitu.scheduler import DataInput, Toleration

        affinity = dict(req.affinity)
        if req.anti_affinity:  # the nodes none of whose labels the step excludes
            labels = {n.name: {**n.labels, **_scheduler_node(n).labels} for n in self.infos}
            allowed = tuple(sorted(name for name, lab in labels.items() if not any(
                lab.get(k) in vals for k, vals in req.anti_affinity)))
            affinity[NODE_LABEL] = allowed or ("",)
        return SRequest(name=name, cpu=req.cpu, memory=req.memory, gpu=req.gpu,
                        gpu_types=types, restartable=req.restartable,
                        node_selector=dict(req.node_selector), affinity=affinity,
                        tolerations=tuple(Toleration.parse(t) for t in req.tolerations),
                        priority=req.priority,
                        inputs=tuple(DataInput(shard=k, size=n) for k, n in req.inputs))

    @staticmethod
    def _reason(req: Request, why: str) -> str:
        """The scheduler's reason in the words of a step's options."""
        why = why.replace("(set restartable=True to allow spot nodes)",
                          "(set spot=True on the step to allow spot nodes)")
        if req.anti_affinity:
            rule = "; ".join(f"{k} not in ({', '.join(v)})" for k, v in req.anti_affinity)
            why = re.sub(rf"no label {re.escape(NODE_LABEL)} in \([^)]*\) "
                         r"\(the step's affinity asks for it\)",
                         f"a label the step's anti_affinity excludes ({rule})", why)
        return why

    def place(self, req: Request, name: str | None = None) -> Placement | str:
        self._seq += 1
        d = self.cluster.place_one(self._request(req, name or f"attempt-{self._seq}"))
        if d.placement is None:
            return self._reason(req, d.reason or "no node fits")
        p = d.placement
        ids = tuple(self._gpu_index[p.node][i] for i in p.gpus)
        share = p.gpu_milli / 1000 if 0 < req.gpu < 1 else 0.0
        return Placement(node=p.node, cpu=req.cpu, memory=req.memory, gpu_ids=ids,
                         gpu_share=share, ticket=p)

    def set_others(self, placements: list[dict[str, Any]]) -> None:
        """What other engines' running attempts (and the server's endpoints) hold on these
        nodes now, as :meth:`Placement.as_dict` records it: reserved here too, so work of
        different runs sharing a machine or a cluster never gets the same CPU, memory or
        GPU."""
        for ticket in self._others:
            self.cluster.release(ticket)
        self._others = hold_elsewhere(self.cluster, self._gpu_index, placements)

    def others_hold(self) -> bool:
        """Do other engines' attempts hold anything on these nodes (as last seen)?"""
        return bool(self._others)
    def place_gang(self, req: Request, workers: int, name: str | None = None
                   ) -> Placement | str:
        """Place ``workers`` copies of ``req`` as one gang, all or nothing (the scheduler's
        gang placement: if one member does not fit, none is reserved). Returns a placement
        whose ``ranks`` are the members' placements, or why the gang does not fit now."""
        self._seq += 1
        base = name or f"attempt-{self._seq}"
        one = self._request(req, base)
        members = [dataclasses.replace(one, name=f"{base}@{r}", gang=base, gang_size=workers)
                   for r in range(workers)]
        decisions = self.cluster.place(members)
        if not all(d.placement is not None for d in decisions):
            why = next((d.reason for d in decisions if d.reason), None) or "no node fits"
            return self._reason(req, f"the gang of {workers} workers does not fit: {why}")
        ranks = []
        for d in decisions:
            p = d.placement
            assert p is not None
            ids = tuple(self._gpu_index[p.node][i] for i in p.gpus)
            share = p.gpu_milli / 1000 if 0 < req.gpu < 1 else 0.0
            ranks.append(Placement(node=p.node, cpu=req.cpu, memory=req.memory, gpu_ids=ids,
                                   gpu_share=share, ticket=p))
        r0 = ranks[0]
        return dataclasses.replace(r0, ranks=tuple(ranks), ticket=None)

    def largest_gang(self, req: Request, workers: int) -> int:
        """The most workers of ``req`` that an empty cluster could hold as one gang."""
        for n in range(workers, 0, -1):
            if isinstance(Placer(self.infos).place_gang(req, n), Placement):
                return n
        return 0

    def note_data(self, data_id: str, node: str) -> None:
        """``node`` holds ``data_id`` (a dataset shard's replica, or an artifact it made)."""
        if node in self._gpu_index:
            self.cluster.add_shard(data_id, node)
            self._holders.setdefault(data_id, set()).add(node)

    def held(self, inputs: tuple[tuple[str, int], ...]) -> dict[str, int]:
        """Node -> how many of these inputs' bytes it holds (nodes holding none left out)."""
        out: dict[str, int] = {}
        for data_id, size in inputs:
            for node in self._holders.get(data_id, ()):
                out[node] = out.get(node, 0) + size
        return out

    def nearest(self, node: str, inputs: tuple[tuple[str, int], ...]) -> bool:
        """Does ``node`` hold as many of these inputs' bytes as any node does?"""
        held = self.held(inputs)
        return held.get(node, 0) >= max(held.values(), default=0)

    def could_host(self, node: str, req: Request) -> bool:
        """Could ``node`` run ``req`` if nothing else ran there?"""
        key = (node, req)
        if key not in self._hosts:
            info = [n for n in self.infos if n.name == node]
            self._hosts[key] = bool(info) and isinstance(Placer(info).place(req), Placement)
        return self._hosts[key]

    def release(self, p: Placement) -> None:
        if p.ranks:
            for member in p.ranks:
                self.release(member)
            return
        if p.node in self._gpu_index:  # not on a node dropped since
            self.cluster.release(p.ticket)

    def names(self) -> set[str]:
        return {n.name for n in self.infos}

    def drop_nodes(self, gone: set[str], running: list[tuple[Request, Placement]]
                   ) -> dict[int, Placement]:
        """Forget nodes that left the cluster; re-reserve what still runs elsewhere.

        Returns the new placements of ``running`` (by position) on the remaining nodes.
        """
        from insitu.scheduler import ClusterState

        self.infos = [n for n in self.infos if n.name not in gone]
        self._gpu_index = {k: v for k, v in self._gpu_index.items() if k not in gone}
        self._hosts = {k: v for k, v in self._hosts.items() if k[0] not in gone}
        for nodes in self._holders.values():
            nodes -= gone
        self.cluster = ClusterState([_scheduler_node(n) for n in self.infos])
        self._others = []  # set again by the next pass
        for data_id, nodes in self._holders.items():  # what the remaining nodes hold
            for node in nodes:
                self.cluster.add_shard(data_id, node)
        out: dict[int, Placement] = {}
        for i, (_, p) in enumerate(running):
            members = p.ranks or (p,)
            if all(m.node not in gone for m in members):
                for m in members:  # exactly as before: same node, same GPUs
                    self.cluster.reserve(m.ticket)
                out[i] = p
        return out

    def impossible(self, req: Request) -> str | None:
        """Why no node could ever run ``req`` (on an empty cluster), or None if one can."""
        fresh = Placer(self.infos)
        got = fresh.place(req)
        return None if isinstance(got, Placement) else got


def hold_elsewhere(cluster: Any, gpu_index: dict[str, list[int]],
                   placements: list[dict[str, Any]]) -> list[Any]:
    """Reserve in ``cluster`` what ``placements`` (of work placed by others: ``node``,
    ``cpu``, ``memory``, ``gpu_ids``, ``gpu_share``, and a gang's ``ranks``) hold on its
    nodes; returns the tickets, to release before the next look."""
    from insitu.scheduler import Placement as SPlacement

    tickets = []
    for i, p in enumerate(placements):
        share = float(p.get("gpu_share") or 0.0)
        for rank in p.get("ranks") or [p]:  # a gang: each worker, with the same request
            node = rank.get("node")
            if node not in gpu_index:
                continue  # a node this cluster does not have
            index = gpu_index[node]
            gpus = tuple(index.index(g) for g in rank.get("gpu_ids") or () if g in index)
            ticket = SPlacement(
                request=f"elsewhere/{i}/{rank.get('rank', 0)}", node=node, gpus=gpus,
                gpu_milli=round(share * 1000) if share else 1000 if gpus else 0,
                cpu_milli=round(float(p.get("cpu") or 0) * 1000),
                memory=int(p.get("memory") or 0))
            cluster.reserve(ticket)
            tickets.append(ticket)
    return tickets


def describe(n: NodeInfo) -> str:
    if n.gpus:
        models: dict[str, int] = {}
        for g in n.gpus:
            models[g.model] = models.get(g.model, 0) + 1
        gpus = ", ".join(f"{c} x {m}" for m, c in models.items())
    else:
        gpus = "no GPUs"
    return f"node '{n.name}' has {n.cpu:g} CPUs, {format_bytes(n.memory)} memory, {gpus}"
