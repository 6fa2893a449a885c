"""Each score plugin on small hand-built clusters, with the exact expected placement."""

from __future__ import annotations

import numpy as np
import pytest
from sched_helpers import gpu_node

from insitu.errors import UserError
from insitu.scheduler import (
    ClusterState,
    DataInput,
    Filter,
    Gpu,
    Node,
    Policy,
    Request,
    Workload,
    get_policy,
)
from insitu.scheduler._policies import BestFit

GiB = 1024**3


def _node_of(st: ClusterState, req: Request) -> str:
    d = st.place([req])[0]
    assert d.placement is not None, d.reason
    return d.placement.node


def test_first_fit_takes_the_first_node() -> None:
    st = ClusterState([gpu_node(f"n{i}") for i in range(3)], policy="first_fit")
    assert [_node_of(st, Request(name=f"r{i}", cpu=30)) for i in range(3)] == ["n0", "n1", "n2"]


def test_best_fit_packs_and_least_allocated_spreads() -> None:
    for policy, expect in (("best_fit", "n0"), ("least_allocated", "n1")):
        st = ClusterState([gpu_node("n0"), gpu_node("n1")], policy=policy)
        st.place([Request(name="seed", cpu=16, gpu=1)])
        first = st.placements["seed"].node
        other = "n1" if first == "n0" else "n0"
        got = _node_of(st, Request(name="r", cpu=4, gpu=1))
        assert got == (first if expect == "n0" else other), policy


def test_gpu_packing_shares_a_gpu_already_in_use() -> None:
    st = ClusterState([gpu_node("n0", gpus=2), gpu_node("n1", gpus=2)], policy="gpu_packing")
    a = st.place([Request(name="a", cpu=1, gpu=0.5)])[0].placement
    b = st.place([Request(name="b", cpu=1, gpu=0.25)])[0].placement
    assert a is not None and b is not None
    assert (b.node, b.gpus) == (a.node, a.gpus)


def test_gpu_clustering_puts_equal_requests_together() -> None:
    st = ClusterState([gpu_node(f"n{i}", gpus=4) for i in range(3)], policy="gpu_clustering")
    first = _node_of(st, Request(name="a", cpu=1, gpu=0.3))
    assert _node_of(st, Request(name="b", cpu=1, gpu=0.3)) == first


def test_fgd_fills_a_half_used_gpu_instead_of_breaking_a_new_one() -> None:
    w = Workload.from_requests([Request(name="t", cpu=1, gpu=0.5)] * 3
                               + [Request(name="w", cpu=1, gpu=1)])
    for policy in ("fgd", "insitu"):
        st = ClusterState([gpu_node("n0", gpus=2), gpu_node("n1", gpus=2)], policy=policy,
                          workload=w)
        a = st.place([Request(name="a", cpu=1, gpu=0.5)])[0].placement
        b = st.place([Request(name="b", cpu=1, gpu=0.5)])[0].placement
        assert a is not None and b is not None
        assert (b.node, b.gpus) == (a.node, a.gpus), policy


def test_insitu_keeps_cpu_away_from_gpus_it_would_strand() -> None:
    # n0: 8 free GPUs behind 16 cores; n1: its one GPU taken, 63 cores free. A 12-core CPU-only
    # task on n0 would strand its GPUs for the 8-core GPU tasks expected, so it goes to n1.
    w = Workload.from_requests([Request(name="t", cpu=8, gpu=1)] * 4)
    st = ClusterState([gpu_node("n0", gpus=8, cpu=16),
                       gpu_node("n1", gpus=1, cpu=64, labels={"host": "n1"})], workload=w)
    assert _node_of(st, Request(name="fill", cpu=1, gpu=1, node_selector={"host": "n1"})) == "n1"
    assert _node_of(st, Request(name="cpu", cpu=12)) == "n1"


def test_data_locality_prefers_the_node_holding_the_shard() -> None:
    nodes = [gpu_node("n0", zone="a"), gpu_node("n1", zone="a", shards={"ds/0": 50 * GiB}),
             gpu_node("n2", zone="b")]
    st = ClusterState(nodes)
    r = Request(name="r", cpu=2, gpu=1, inputs=(DataInput(shard="ds/0", size=50 * GiB),))
    assert _node_of(st, r) == "n1"


def test_spread_puts_serving_replicas_on_distinct_nodes() -> None:
    st = ClusterState([gpu_node(f"n{i}", gpus=4) for i in range(3)])
    got = {_node_of(st, Request(name=f"r{i}", cpu=1, gpu=1, spread="svc")) for i in range(3)}
    assert got == {"n0", "n1", "n2"}


def test_restartable_work_goes_to_spot_and_other_work_never_does() -> None:
    st = ClusterState([gpu_node("od"), gpu_node("spot", spot=True)])
    assert _node_of(st, Request(name="a", cpu=1, gpu=1, restartable=True)) == "spot"
    assert _node_of(st, Request(name="b", cpu=1, gpu=1)) == "od"
    assert _node_of(st, Request(name="c", cpu=1, gpu=1)) == "od"
    assert not st.place([Request(name="d", cpu=1, gpu=1)])[0].placed


def test_mig_partitions_follow_the_hardware_layouts() -> None:
    node = Node(name="m", cpu=64, memory=512 * GiB,
                gpus=(Gpu(model="A100-80GB", mig=True),))
    st = ClusterState([node])
    a = st.place([Request(name="a", cpu=1, mig_profile="3g.40gb")])[0].placement
    b = st.place([Request(name="b", cpu=1, mig_profile="3g.40gb")])[0].placement
    assert a is not None and b is not None
    assert (a.mig_start, b.mig_start) == (0, 4)
    d = st.place([Request(name="c", cpu=1, mig_profile="1g.10gb")])[0]
    assert not d.placed
    assert d.reason == "0 of 1 node fits: 1 has no free slot for a 1g.10gb partition"
    st.release(a)
    c = st.place([Request(name="c", cpu=1, mig_profile="4g.40gb")])[0].placement
    assert c is not None and c.mig_start == 0
    assert not st.place([Request(name="w", cpu=1, gpu=1)])[0].placed


def test_unknown_policy_is_a_user_error() -> None:
    with pytest.raises(UserError, match="unknown policy 'nope'"):
        get_policy("nope")


class _NoZoneB(Filter):
    name = "no_zone_b"

    def mask(self, st: ClusterState, req: Request) -> np.ndarray:
        return np.array([n.zone != "b" for n in st.nodes])

    def reasons(self, st: ClusterState, req: Request, idx: np.ndarray) -> list:
        return [("{are} in zone b, which this policy keeps for others", idx)]


def test_a_custom_filter_composes_into_a_policy_and_its_explanation() -> None:
    pol = Policy("mine", [(BestFit(), 1.0)], filters=[_NoZoneB()])
    st = ClusterState([gpu_node("a", zone="a", gpus=1), gpu_node("b", zone="b", gpus=4)],
                      policy=pol)
    assert _node_of(st, Request(name="r", cpu=1, gpu=1)) == "a"
    assert st.explain(Request(name="s", cpu=1, gpu=1)) == (
        "0 of 2 nodes fit: 1 is in zone b, which this policy keeps for others; "
        "1 has no free GPU")


def test_dot_prod_prefers_the_node_whose_free_vector_aligns_least() -> None:
    st = ClusterState([gpu_node("n0", gpus=2, labels={"h": "0"}), gpu_node("n1", gpus=2)],
                      policy="dot_prod")
    assert _node_of(st, Request(name="busy", cpu=16, gpu=1, node_selector={"h": "0"})) == "n0"
    assert _node_of(st, Request(name="r", cpu=4, gpu=1)) == "n0"
