"""ClusterState: reserve and release, gangs, and properties that hold for every policy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st_
from sched_helpers import gpu_node

from insitu.errors import NotFound, ResourceError
from insitu.scheduler import POLICIES, ClusterState, Request, Workload
from insitu.scheduler._frag import fill_delta, fill_frag
from insitu.scheduler._workload import WorkloadArrays


def _cluster(policy: str = "insitu", seed: int = 0) -> ClusterState:
    nodes = [gpu_node("a", gpus=2, cpu=16), gpu_node("b", gpus=4, cpu=32),
             gpu_node("c", gpus=8, cpu=64, model="V100"), gpu_node("d", gpus=0, cpu=8)]
    return ClusterState(nodes, policy=policy, seed=seed)


def test_release_restores_every_free_resource() -> None:
    st = _cluster()
    before = (st.cpu_free.copy(), st.mem_free.copy(), st.gfree.copy())
    ds = st.place([Request(name="a", cpu=2, memory="1GiB", gpu=0.3),
                   Request(name="b", cpu=1, gpu=2), Request(name="c", cpu=4)])
    assert all(d.placed for d in ds)
    for d in ds:
        assert d.placement is not None
        st.release(d.placement)
    assert all(np.array_equal(x, y) for x, y in zip(before, (st.cpu_free, st.mem_free, st.gfree),
                                                   strict=True))
    with pytest.raises(NotFound, match="no placement for request 'a'"):
        st.release("a")


def test_placing_a_name_twice_is_refused() -> None:
    st = _cluster()
    st.place([Request(name="a", cpu=1)])
    with pytest.raises(ResourceError, match="already placed"):
        st.place([Request(name="a", cpu=1)])


def test_gang_is_all_or_nothing() -> None:
    st = _cluster()
    gang = [Request(name=f"w{i}", cpu=1, gpu=4, gang="job", gang_size=4) for i in range(4)]
    ds = st.place(gang)
    assert not any(d.placed for d in ds)
    assert ds[0].reason is not None and ds[0].reason.startswith(
        "gang 'job' is placed all-or-nothing and member 'w3' does not fit: 0 of 4 nodes fit")
    assert not st.placements
    ok = st.place([Request(name=f"v{i}", cpu=1, gpu=2, gang="small", gang_size=3)
                   for i in range(3)])
    assert all(d.placed for d in ok)
    part = st.place([Request(name="p0", cpu=1, gang="half", gang_size=2)])
    assert part[0].reason == ("gang 'half' has 1 of its 2 members; it is placed only when all "
                              "are submitted together")


def test_same_seed_same_decisions() -> None:
    reqs = [Request(name=f"r{i}", cpu=1 + i % 3, gpu=[0.25, 0.5, 1, 2][i % 4]) for i in range(20)]
    for policy in POLICIES:
        a = [d.placement for d in _cluster(policy, 3).place(reqs)]
        b = [d.placement for d in _cluster(policy, 3).place(reqs)]
        assert a == b, policy


_req = st_.builds(
    lambda cpu, gpu, spec, gang: (cpu, gpu, spec, gang),
    st_.sampled_from([0.5, 1, 4, 12, 40]),
    st_.sampled_from([0, 0.1, 0.25, 0.5, 0.75, 1, 2, 4, 8]),
    st_.sampled_from([(), ("T4",), ("V100",)]),
    st_.sampled_from([None, None, None, "g1", "g2"]))


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st_.lists(_req, min_size=1, max_size=30), st_.sampled_from(sorted(POLICIES)),
       st_.lists(st_.integers(0, 29), max_size=10))
def test_no_overcommit_and_gangs_all_or_nothing(specs: list, policy: str,
                                                releases: list[int]) -> None:
    st = _cluster(policy)
    reqs = [Request(name=f"r{i}", cpu=c, gpu=g, gpu_types=t, gang=gg,
                    gang_size=sum(1 for s in specs if s[3] == gg) if gg else 1)
            for i, (c, g, t, gg) in enumerate(specs)]
    ds = st.place(reqs)
    for rel in releases:
        name = f"r{rel}"
        if name in st.placements:
            st.release(name)
    ds += st.place([Request(name=f"again{i}", cpu=c, gpu=g, gpu_types=t)
                    for i, (c, g, t, _) in enumerate(specs)])
    assert (st.cpu_free >= 0).all() and (st.mem_free >= 0).all()
    assert (st.gfree[st.gcap > 0] >= 0).all() and (st.gfree <= st.gcap).all() or (
        (st.gfree[st.gcap == 0] == -1).all())
    # recompute usage from the placements and compare with the arrays
    used = np.zeros_like(st.gfree)
    for p in st.placements.values():
        for g in p.gpus:
            used[st.index[p.node], g] += p.gpu_milli
    assert (used <= 1000).all()
    assert np.array_equal(np.where(st.gcap > 0, 1000 - used, -1), st.gfree)
    for gang in ("g1", "g2"):
        members = [d for d in ds if d.request.gang == gang]
        assert all(d.placed for d in members) or not any(d.placed for d in members)
    for d in ds:
        if d.placement is not None and d.request.gpu_types:
            node = st.nodes[st.index[d.placement.node]]
            assert all(node.gpus[g].model in d.request.gpu_types for g in d.placement.gpus)


@settings(max_examples=30, deadline=None, database=None)
@given(st_.lists(st_.sampled_from([-1, 0, 100, 250, 500, 530, 1000]), min_size=16, max_size=16),
       st_.lists(st_.integers(0, 64000), min_size=2, max_size=2),
       st_.sampled_from([(0, 0), (1, 250), (1, 500), (1, 1000), (2, 1000)]),
       st_.integers(0, 16000), st_.sampled_from([None, 0.5, 0.9]))
def test_fast_fill_delta_matches_the_definition(gfs: list[int], cpus: list[int],
                                                shape: tuple[int, int], cpu: int,
                                                pressure: float | None) -> None:
    w = Workload.from_requests([Request(name="a", cpu=4, gpu=0.5), Request(name="b", cpu=8, gpu=1),
                                Request(name="c", cpu=2, gpu=0.25), Request(name="d", cpu=1, gpu=2),
                                Request(name="e", cpu=3)], coverage=1.0)
    wa = WorkloadArrays(w, ["T4"])
    if pressure is not None:
        wa.set_cpu_pressure(pressure)
    gf = np.array(gfs, dtype=np.int64).reshape(2, 8)
    cp = np.array(cpus, dtype=np.int64)
    model = np.array([0, 0])
    n, d = shape
    allowed = gf >= 0
    delta, gpu = fill_delta(gf, cp, model, wa, cpu, n, d, allowed)
    before = fill_frag(gf, cp, model, wa)
    for r in range(2):
        if n and d < 1000:
            if not ((gf[r] >= d) & allowed[r]).any():
                assert np.isinf(delta[r])
                continue
            g2 = gf[r].copy()
            g2[gpu[r]] -= d
        elif n:
            if (gf[r] >= 1000).sum() < n:
                continue
            g2 = gf[r].copy()
            g2[np.flatnonzero(g2 >= 1000)[:n]] = 0
        else:
            g2 = gf[r].copy()
        after = fill_frag(g2[None], cp[r:r + 1] - cpu, model[:1], wa)[0]
        assert after - before[r] + n * d * wa.p.sum() == pytest.approx(delta[r], abs=1e-2)


def test_cpu_pressure_decides_how_copies_are_charged_cpu() -> None:
    from insitu.scheduler._workload import cpu_pressure, own_cpu_weight

    w = Workload.from_requests([Request(name="a", cpu=8, gpu=1), Request(name="b", cpu=2, gpu=1)],
                               coverage=1.0)
    # the mix asks 5 cores per GPU: on 10 cores per GPU pressure is 0.5, on 4 it is 1.25
    assert cpu_pressure(w, 10_000, 1000) == 0.5 and cpu_pressure(w, 4_000, 1000) == 1.25
    assert own_cpu_weight(0.5) == 0.0 and own_cpu_weight(1.25) == 1.0
    wa = WorkloadArrays(w, ["T4"])
    assert list(wa.cpu) == [2000, 8000]
    assert list(wa.cpu_div) == [2000, 8000]  # own CPU until told otherwise
    wa.set_cpu_pressure(1.25)
    assert list(wa.cpu_div) == [2000, 8000]
    wa.set_cpu_pressure(0.5)  # CPU is plentiful: each copy is charged the mix's 5 cores per GPU
    assert list(wa.cpu_div) == [5000, 5000]
    # a 2-core shape still needs 2 cores for one copy, an 8-core one its 8
    assert wa.cpu_copies(np.array([[7000]])).tolist() == [[1.0, 0.0]]
