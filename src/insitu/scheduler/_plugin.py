"""What policies and filters are written against: the cluster as they see it, and their bases.

The package is layered; each module imports only modules of lower layers:

1. records and measures: ``_model``, ``_mig``, ``_workload``, ``_frag``, ``_trace``
2. this module: :class:`ClusterView` (the read-only surface of a cluster that plugins use),
   :class:`Filter`, :class:`ScorePlugin` and :class:`Policy`
3. ``_explain`` (the built-in filters, "why pending"), ``_published`` (the published baselines)
4. ``_policies`` (insitu's plugins and the policies by name)
5. ``_state`` (:class:`~insitu.scheduler.ClusterState`, which implements :class:`ClusterView`)
6. ``_running``, ``_queues``, ``_sim``, ``_online``, ``_bound``, ``_report``, ``_cli``
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from insitu.scheduler._model import Node, Request
from insitu.scheduler._workload import Workload

Groups = list[tuple[str, np.ndarray]]
Scored = tuple[np.ndarray, np.ndarray | None]


class ClusterView(Protocol):
    """The state of a cluster as filters and score plugins read it (rows are nodes)."""

    nodes: tuple[Node, ...]
    models: list[str]
    tainted: list[int]
    mig_gpus: dict[tuple[int, int], int]
    cpu_cap: np.ndarray
    mem_cap: np.ndarray
    gcap: np.ndarray
    cpu_free: np.ndarray
    mem_free: np.ndarray
    gfree: np.ndarray
    node_model: np.ndarray
    spot: np.ndarray
    zone: np.ndarray
    zones: list[str]
    gpu_capacity: int
    milli_hosts: dict[int, np.ndarray]
    spread_counts: dict[str, np.ndarray]
    shard_nodes: dict[str, np.ndarray]
    rng: np.random.Generator

    def gpu_ok(self, req: Request, idx: np.ndarray | slice | int = ...) -> np.ndarray: ...


class Filter:
    """A static filter plugin: which nodes a request may use, and why the others may not.

    ``mask`` returns one bool per node; ``reasons`` groups the failing nodes ``idx`` by reason,
    each reason a phrase that follows a count ("300 *have taint ...*"); ``{have}`` is replaced
    by "has" or "have".
    """

    name = "filter"

    def mask(self, st: ClusterView, req: Request) -> np.ndarray:
        raise NotImplementedError

    def reasons(self, st: ClusterView, req: Request, idx: np.ndarray) -> Groups:
        raise NotImplementedError


class ScorePlugin:
    """Scores nodes ``idx`` (all feasible) for ``req``; may pick a GPU per node (or ``None``).

    ``node_local(req)``: the score of a node depends only on that node's state and the request's
    resource shape (so it may be cached); ``applies(req)``: the plugin has anything to say.
    """

    name = "score"

    def node_local(self, req: Request) -> bool:
        return True

    def applies(self, req: Request) -> bool:
        return True

    def prepare(self, st: ClusterView, workload: Workload | None) -> None:  # noqa: B027
        """Called once when the policy is bound to a cluster."""

    def score(self, st: ClusterView, req: Request, idx: np.ndarray) -> Scored:
        raise NotImplementedError


def bestfit_gpu(st: ClusterView, req: Request, idx: np.ndarray) -> np.ndarray:
    """For a fractional request: per node, the fullest GPU that fits (lowest index on ties)."""
    gf = st.gfree[idx]
    ok = (gf >= req.gpu_milli) & st.gpu_ok(req, idx)
    return np.where(ok, gf, 10**6).argmin(axis=1)


class Policy:
    """Weighted score plugins, and extra filter plugins.

    Each plugin scores the candidate nodes that passed every filter (higher is better); the
    policy adds the weighted scores and the cluster picks the best node, breaking exact ties at
    random with its seeded generator. The first plugin that picks a GPU per node decides the
    GPU of a shared request; without one the fullest GPU that still fits is used (best fit).

    ``filters`` run after the built-in ones (taints, selector, affinity, spot, GPU type). A filter
    must be static: its answer may depend on the node's fixed attributes and the request, not on
    what is placed, as its masks are cached per request shape; its reasons join "why pending".

    ``ties``: how nodes with the same best score are told apart: ``"random"`` (seeded, drawn
    anew for each decision), ``"first"`` (the first in the cluster's node order) or ``"order"``
    (the first in one random order of the nodes, drawn from the seed when the cluster is made:
    what reproduces the ATC'23 FGD paper's simulator; see :mod:`insitu.scheduler._published`).
    """

    def __init__(self, name: str, plugins: Sequence[tuple[ScorePlugin, float]],
                 filters: Sequence[Filter] = (), *, ties: str = "random") -> None:
        if ties not in ("random", "first", "order"):
            raise ValueError(f"ties must be 'random', 'first' or 'order', not {ties!r}")
        self.name = name
        self.plugins = list(plugins)
        self.filters = list(filters)
        self.ties = ties

    def node_local(self, req: Request) -> bool:
        return all(p.node_local(req) for p, _ in self.plugins)

    def prepare(self, st: ClusterView, workload: Workload | None) -> None:
        for p, _ in self.plugins:
            p.prepare(st, workload)

    def score(self, st: ClusterView, req: Request, idx: np.ndarray) -> tuple[np.ndarray,
                                                                               np.ndarray]:
        total = np.zeros(len(idx))
        gpu: np.ndarray | None = None
        for p, w in self.plugins:
            if not p.applies(req):
                continue
            s, g = p.score(st, req, idx)
            if w != 1.0:
                s = s * w
            total += s
            if gpu is None and g is not None:
                gpu = g
        if gpu is None:
            if req.gpu_count and req.gpu_milli < 1000:
                gpu = bestfit_gpu(st, req, idx)
            else:
                gpu = np.full(len(idx), -1, dtype=np.int64)
        return total, gpu
