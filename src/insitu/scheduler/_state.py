"""The cluster as numpy arrays over nodes, with place / release / explain.

Nodes are rows. ``gfree[n, g]`` is the free milli-GPU of GPU ``g`` of node ``n`` (-1 where the
node has no such GPU, or the GPU is in MIG mode: MIG GPUs are tracked apart as bit masks of used
memory slices). Every change to a node bumps its entry in a change log, so that per-request-shape
caches of feasibility and scores recompute only the nodes that changed since they were last used.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from insitu.errors import NotFound, ResourceError
from insitu.scheduler import _explain
from insitu.scheduler._mig import MIG_MODELS, find_start, mig_profile, slot_mask
from insitu.scheduler._model import Decision, Node, Placement, Request
from insitu.scheduler._plugin import Policy
from insitu.scheduler._policies import get_policy
from insitu.scheduler._workload import Workload

GiB = 1024**3


@dataclass
class _Entry:
    pos: int
    feasible: np.ndarray
    score: np.ndarray
    gpu: np.ndarray


class ClusterState:
    """The free resources of a cluster, and the placements reserved on it.

    Not thread-safe: one owner calls :meth:`place`, :meth:`release` and :meth:`explain`. Pure: no
    I/O, no clock; for a given seed, the same calls give the same decisions.
    """

    def __init__(self, nodes: Sequence[Node], *, policy: object = "default", seed: int = 0,
                 workload: Workload | None = None) -> None:
        if not nodes:
            raise ResourceError("a cluster needs at least one node",
                                hint="give ClusterState([Node(...), ...])")
        self.nodes: tuple[Node, ...] = tuple(nodes)
        self.index: dict[str, int] = {}
        for i, nd in enumerate(self.nodes):
            if nd.name in self.index:
                raise ResourceError(f"two nodes are named {nd.name!r}",
                                    hint="give every node a unique name")
            self.index[nd.name] = i
        n = len(self.nodes)
        g = max(1, max(len(nd.gpus) for nd in self.nodes))
        self.models: list[str] = sorted({gp.model for nd in self.nodes for gp in nd.gpus})
        mi = {m: k for k, m in enumerate(self.models)}
        self.cpu_cap = np.array([round(nd.cpu * 1000) for nd in self.nodes], dtype=np.int64)
        self.mem_cap = np.array([nd.memory for nd in self.nodes], dtype=np.int64)
        self.gcap = np.zeros((n, g), dtype=np.int32)
        self.gmodel = np.full((n, g), -1, dtype=np.int16)
        self.mig_gpus: dict[tuple[int, int], int] = {}  # (node, gpu) -> used slice mask
        for i, nd in enumerate(self.nodes):
            for j, gp in enumerate(nd.gpus):
                self.gmodel[i, j] = mi[gp.model]
                if gp.mig:
                    if gp.model not in MIG_MODELS:
                        raise ResourceError(
                            f"node {nd.name!r}: GPU {j} is a {gp.model}, which has no MIG mode",
                            hint=f"set mig=True only on {', '.join(sorted(MIG_MODELS))}")
                    self.mig_gpus[(i, j)] = 0
                else:
                    self.gcap[i, j] = 1000
        self.node_model = self.gmodel[:, 0].copy()
        self.ngpu = np.array([len(nd.gpus) for nd in self.nodes], dtype=np.int32)
        self.tainted = [i for i, nd in enumerate(self.nodes) if nd.taints]
        self.spot = np.array([nd.spot for nd in self.nodes], dtype=bool)
        zones = sorted({nd.zone for nd in self.nodes})
        self.zones = zones
        self.zone = np.array([zones.index(nd.zone) for nd in self.nodes], dtype=np.int32)
        self.gpu_capacity = int(self.gcap.sum())
        self.cpu_free = self.cpu_cap.copy()
        self.mem_free = self.mem_cap.copy()
        self.gfree = np.where(self.gcap > 0, 1000, -1).astype(np.int32)
        self.placements: dict[str, Placement] = {}
        self.milli_hosts: dict[int, np.ndarray] = {}
        self.spread_counts: dict[str, np.ndarray] = {}
        self.shard_nodes: dict[str, np.ndarray] = {}
        for i, nd in enumerate(self.nodes):
            for sh in nd.shards:
                self.shard_nodes.setdefault(sh, np.zeros(n, dtype=bool))[i] = True
        self.rng = np.random.default_rng(seed)
        #: each node's rank for ties="order": one random order of the nodes, drawn from the seed
        self.rank = np.random.default_rng([seed, 1]).permutation(n)
        #: compute the "why pending" text for every unplaced request (simulations turn it off)
        self.explain_pending = True
        #: nodes held back (a queue's reservation): place/place_one do not use them; place_on does
        self.held: np.ndarray | None = None
        self._log: list[int] = []
        self._cache: dict[tuple, _Entry] = {}
        self._static: dict[tuple, np.ndarray] = {}
        self.policy: Policy = get_policy(policy) if not isinstance(policy, Policy) else policy
        self.policy.prepare(self, workload if isinstance(workload, Workload) else None)

    # ------------------------------------------------------------------ public surface
    def place(self, requests: Iterable[Request]) -> list[Decision]:
        """Place each request in order and reserve what it takes; one :class:`Decision` each.

        Requests sharing a ``gang`` are placed all-or-nothing: if one member does not fit, none is
        reserved and every member's decision gives the reason.
        """
        out: list[Decision] = []
        gangs: dict[str, list[Request]] = {}
        order: list[Request | str] = []
        for r in requests:
            if r.gang is None:
                order.append(r)
            else:
                if r.gang not in gangs:
                    gangs[r.gang] = []
                    order.append(r.gang)
                gangs[r.gang].append(r)
        for item in order:
            if isinstance(item, str):
                out.extend(self._place_gang(gangs[item]))
            else:
                out.append(self.place_one(item))
        return out

    def place_one(self, req: Request) -> Decision:
        if req.name in self.placements:
            raise ResourceError(f"request {req.name!r} is already placed",
                                hint="release it first, or give each attempt a unique name")
        if req.mig_profile is not None:
            return self._place_mig(req)
        best = self._choose(req)
        if best is None:
            return self._pending(req)
        node, gpu = best
        return Decision(request=req, placement=self._commit(req, node, gpu))

    def release(self, placement: Placement | str) -> None:
        """Give back what ``placement`` (or the request of that name) reserved."""
        name = placement if isinstance(placement, str) else placement.request
        p = self.placements.pop(name, None)
        if p is None:
            raise NotFound(f"no placement for request {name!r}",
                           hint="release only what place() returned, once")
        i = self.index[p.node]
        self.cpu_free[i] += p.cpu_milli
        self.mem_free[i] += p.memory
        if p.mig_profile is not None and p.mig_start is not None:
            prof = mig_profile(self.nodes[i].gpus[p.gpus[0]].model, p.mig_profile)
            self.mig_gpus[(i, p.gpus[0])] &= ~slot_mask(prof, p.mig_start)
        else:
            for gi in p.gpus:
                self.gfree[i, gi] += p.gpu_milli
            if p.gpus:
                self.milli_hosts[p.gpu_milli * len(p.gpus)][i] -= 1
        if p.spread is not None:
            self.spread_counts[p.spread][i] -= 1
        self._log.append(i)

    def place_on(self, req: Request, node: int | str) -> Decision:
        """Place ``req`` on one given node (by index or name) if it fits there."""
        i = self.index[node] if isinstance(node, str) else int(node)
        idx = np.array([i])
        if req.mig_profile is not None:
            raise ResourceError("place_on does not take MIG requests", hint="use place()")
        if not (self.static_mask(req)[i] and self.fits(req, idx)[0]):
            return self._pending(req)
        _, gpu = self.policy.score(self, req, idx)
        return Decision(request=req, placement=self._commit(req, i, int(gpu[0])))

    def reserve(self, p: Placement) -> None:
        """Reserve exactly ``p`` again (after a release), e.g. to undo a tentative eviction."""
        if p.request in self.placements:
            raise ResourceError(f"request {p.request!r} is already placed",
                                hint="release it first")
        i = self.index[p.node]
        self.cpu_free[i] -= p.cpu_milli
        self.mem_free[i] -= p.memory
        if p.mig_profile is not None and p.mig_start is not None:
            prof = mig_profile(self.nodes[i].gpus[p.gpus[0]].model, p.mig_profile)
            self.mig_gpus[(i, p.gpus[0])] |= slot_mask(prof, p.mig_start)
        elif p.gpus:
            for gi in p.gpus:
                self.gfree[i, gi] -= p.gpu_milli
            tot = p.gpu_milli * len(p.gpus)
            self.milli_hosts.setdefault(tot, np.zeros(len(self.nodes), dtype=np.int32))[i] += 1
        if p.spread is not None:
            self.spread_counts.setdefault(p.spread, np.zeros(len(self.nodes), dtype=np.int32))
            self.spread_counts[p.spread][i] += 1
        self.placements[p.request] = p
        self._log.append(i)

    def add_shard(self, shard: str, node: str) -> None:
        """Record that ``node`` now holds ``shard`` (an artifact it produced, a copy it
        fetched), so data-locality scoring sends later readers there."""
        arr = self.shard_nodes.setdefault(shard, np.zeros(len(self.nodes), dtype=bool))
        arr[self.index[node]] = True

    def explain(self, req: Request) -> str:
        """Why ``req`` cannot be placed now, summed over nodes; ``""`` if it fits somewhere."""
        text, _ = _explain.explain(self, req, self.policy.filters)
        return text

    def hold(self, nodes: Iterable[str] | None) -> None:
        """Hold ``nodes`` back from :meth:`place` and :meth:`place_one` (``None``: none), e.g.
        for a reservation; :meth:`place_on` still uses them."""
        names = list(nodes or ())
        if not names:
            self.held = None
            return
        held = np.zeros(len(self.nodes), dtype=bool)
        for name in names:
            held[self.index[name]] = True
        self.held = held

    def allocated_gpu_milli(self) -> int:
        return int(self.gpu_capacity - np.clip(self.gfree, 0, None).sum())

    # ------------------------------------------------------------------ internals
    def static_mask(self, req: Request) -> np.ndarray:
        """Nodes allowed by taints, selectors, affinity, GPU type and spot (cached per shape)."""
        key = (tuple(sorted(req.node_selector.items())), tuple(sorted(req.affinity.items())),
               req.tolerations, req.gpu_types, req.restartable, req.gpu_count > 0)
        m = self._static.get(key)
        if m is None:
            m = np.ones(len(self.nodes), dtype=bool)
            for f in (*_explain.STATIC_FILTERS, *self.policy.filters):
                m &= f.mask(self, req)
            self._static[key] = m
        return m

    def gpu_ok(self, req: Request, idx: np.ndarray | slice | int = slice(None)) -> np.ndarray:
        """Per GPU (rows ``idx``): may this request use it (type allowed, not MIG)."""
        gm = self.gmodel[idx]
        if not req.gpu_types:
            return gm >= 0
        allowed = np.zeros(len(self.models) + 1, dtype=bool)
        for t in req.gpu_types:
            if t in self.models:
                allowed[self.models.index(t)] = True
        return allowed[gm]  # gm == -1 picks the last entry, False

    def fits(self, req: Request, idx: np.ndarray) -> np.ndarray:
        """Dynamic fit (CPU, memory, GPUs) of ``req`` on nodes ``idx``."""
        ok = (self.cpu_free[idx] >= req.cpu_milli) & (self.mem_free[idx] >= req.memory)
        if req.gpu_count:
            gf = self.gfree[idx]
            good = gf >= req.gpu_milli
            if req.gpu_types:
                good &= self.gpu_ok(req, idx)
            ok &= good.sum(axis=1) >= req.gpu_count
        return ok

    def _cache_key(self, req: Request) -> tuple | None:
        if not self.policy.node_local(req):
            return None
        return (req.cpu_milli, req.memory, req.gpu_count, req.gpu_milli, req.gpu_types,
                tuple(sorted(req.node_selector.items())), tuple(sorted(req.affinity.items())),
                req.tolerations, req.restartable)

    def _evaluate(self, req: Request, idx: np.ndarray, smask: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        feas = smask[idx] & self.fits(req, idx)
        score = np.full(len(idx), -np.inf)
        gpu = np.full(len(idx), -1, dtype=np.int64)
        if feas.any():
            sub = idx[feas]
            s, gch = self.policy.score(self, req, sub)
            score[feas] = s
            gpu[feas] = gch
        return feas, score, gpu

    def _choose(self, req: Request) -> tuple[int, int] | None:
        smask = self.static_mask(req)
        key = self._cache_key(req)
        n = len(self.nodes)
        if key is None:
            idx = np.flatnonzero(smask if self.held is None else smask & ~self.held)
            feas, score, gpu = self._evaluate(req, idx, smask)
            if not feas.any():
                return None
            best = self._argmax(score)
            return int(idx[best]), int(gpu[best])
        e = self._cache.get(key)
        pos = len(self._log)
        if e is None or pos - e.pos > n // 4:
            idx = np.arange(n)
            feas, score, gpu = self._evaluate(req, idx, smask)
            e = _Entry(pos=pos, feasible=feas, score=score, gpu=gpu)
            self._cache[key] = e
        elif pos > e.pos:
            idx = np.unique(np.fromiter(self._log[e.pos:], dtype=np.int64))
            feas, score, gpu = self._evaluate(req, idx, smask)
            e.feasible[idx] = feas
            e.score[idx] = score
            e.gpu[idx] = gpu
            e.pos = pos
        if self.held is None:
            best = self._argmax(e.score)
            if not e.feasible[best]:
                return None
        else:
            ok = e.feasible & ~self.held
            if not ok.any():
                return None
            best = self._argmax(np.where(ok, e.score, -np.inf))
        return best, int(e.gpu[best])

    def _argmax(self, score: np.ndarray) -> int:
        if self.policy.ties == "first":
            return int(np.argmax(score))
        top = score.max()
        ties = np.flatnonzero(score == top)
        if self.policy.ties == "order":
            return int(ties[np.argmin(self.rank[ties])])
        if len(ties) == 1:
            return int(ties[0])
        return int(ties[self.rng.integers(len(ties))])

    def _commit(self, req: Request, i: int, gpu: int) -> Placement:
        gpus: tuple[int, ...] = ()
        if req.gpu_count:
            if req.gpu_milli < 1000 and gpu >= 0:
                gpus = (gpu,)
            else:
                good = (self.gfree[i] >= req.gpu_milli) & self.gpu_ok(req, i)
                cand = np.flatnonzero(good)
                if req.gpu_milli < 1000:  # best fit: the fullest GPU that still fits
                    cand = cand[np.argsort(self.gfree[i, cand], kind="stable")]
                gpus = tuple(int(x) for x in cand[:req.gpu_count])
            for gi in gpus:
                self.gfree[i, gi] -= req.gpu_milli
            tot = req.gpu_milli * len(gpus)
            if tot not in self.milli_hosts:
                self.milli_hosts[tot] = np.zeros(len(self.nodes), dtype=np.int32)
            self.milli_hosts[tot][i] += 1
        self.cpu_free[i] -= req.cpu_milli
        self.mem_free[i] -= req.memory
        p = Placement(request=req.name, node=self.nodes[i].name, gpus=gpus,
                      gpu_milli=req.gpu_milli if gpus else 0, cpu_milli=req.cpu_milli,
                      memory=req.memory, spread=req.spread)
        if req.spread is not None:
            arr = self.spread_counts.setdefault(req.spread,
                                                np.zeros(len(self.nodes), dtype=np.int32))
            arr[i] += 1
        self.placements[req.name] = p
        self._log.append(i)
        return p

    def _place_mig(self, req: Request) -> Decision:
        assert req.mig_profile is not None
        smask = self.static_mask(req)
        fits_node = (self.cpu_free >= req.cpu_milli) & (self.mem_free >= req.memory) & smask
        best: tuple[int, int, int, int] | None = None  # (free slices after, node, gpu, start)
        for (i, j), used in sorted(self.mig_gpus.items()):
            if not fits_node[i]:
                continue
            model = self.nodes[i].gpus[j].model
            if req.gpu_types and model not in req.gpu_types:
                continue
            prof = MIG_MODELS[model].get(req.mig_profile)
            if prof is None:
                continue
            s = find_start(used, prof)
            if s is None:
                continue
            free_after = 8 - bin(used | slot_mask(prof, s)).count("1")
            if best is None or free_after < best[0]:
                best = (free_after, i, j, s)
        if best is None:
            return self._pending(req)
        _, i, j, s = best
        prof = MIG_MODELS[self.nodes[i].gpus[j].model][req.mig_profile]
        self.mig_gpus[(i, j)] |= slot_mask(prof, s)
        self.cpu_free[i] -= req.cpu_milli
        self.mem_free[i] -= req.memory
        p = Placement(request=req.name, node=self.nodes[i].name, gpus=(j,), gpu_milli=prof.milli,
                      cpu_milli=req.cpu_milli, memory=req.memory, mig_profile=req.mig_profile,
                      mig_start=s)
        self.placements[req.name] = p
        self._log.append(i)
        return Decision(request=req, placement=p)

    def _place_gang(self, members: list[Request]) -> list[Decision]:
        size = max(m.gang_size for m in members)
        if len(members) < size:
            why = (f"gang {members[0].gang!r} has {len(members)} of its {size} members; "
                   "it is placed only when all are submitted together")
            return [Decision(request=m, reason=why) for m in members]
        done: list[Decision] = []
        for m in members:
            d = self.place_one(m)
            if not d.placed:
                for ok in done:
                    assert ok.placement is not None
                    self.release(ok.placement)
                why = (f"gang {m.gang!r} is placed all-or-nothing and member {m.name!r} does "
                       f"not fit: {d.reason}")
                return [Decision(request=x, reason=why, never=d.never) for x in members]
            done.append(d)
        return done

    def _pending(self, req: Request) -> Decision:
        if not self.explain_pending:
            return Decision(request=req, reason="no node fits now (explanations are off)")
        text, never = _explain.explain(self, req, self.policy.filters)
        return Decision(request=req, reason=text, never=never)
