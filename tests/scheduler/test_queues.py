"""Queues: quotas and cohort borrowing, DRF, priorities, preemption, gangs, backfill."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st_
from sched_helpers import gpu_node

from insitu.scheduler import ClusterState, Queue, QueueScheduler, Request


def _sched(queues: list[Queue], nodes: int = 2, gpus: int = 4) -> QueueScheduler:
    cl = ClusterState([gpu_node(f"n{i}", gpus=gpus, cpu=64) for i in range(nodes)])
    return QueueScheduler(cl, queues)


def test_quota_without_cohort_is_a_hard_limit() -> None:
    qs = _sched([Queue(name="a", quota={"gpu": 2})])
    qs.submit(*[Request(name=f"r{i}", cpu=1, gpu=1, queue="a") for i in range(3)])
    ds = {d.request.name: d for d in qs.schedule()}
    assert ds["r0"].placed and ds["r1"].placed
    assert ds["r2"].reason == ("queue 'a' would use 3 of its 2 gpu quota "
                               "(it has no cohort to borrow from)")


def test_borrowing_within_limits_and_lending_limit() -> None:
    qs = _sched([Queue(name="a", quota={"gpu": 2}, cohort="c", borrowing_limit={"gpu": 3}),
                 Queue(name="b", quota={"gpu": 6}, cohort="c", lending_limit={"gpu": 2})])
    qs.submit(*[Request(name=f"a{i}", cpu=1, gpu=1, queue="a") for i in range(5)])
    ds = {d.request.name: d for d in qs.schedule()}
    assert [ds[f"a{i}"].placed for i in range(5)] == [True, True, True, True, False]
    assert ds["a4"].reason == ("queue 'a' is at its gpu quota (2) and cohort 'c' has 0 gpu left "
                               "to lend")


def test_priority_then_drf_order() -> None:
    qs = _sched([Queue(name="a"), Queue(name="b")], nodes=1, gpus=4)
    qs.submit(Request(name="a0", cpu=1, gpu=2, queue="a"))
    qs.schedule()
    qs.submit(Request(name="a1", cpu=1, gpu=1, queue="a"), Request(name="b1", cpu=1, gpu=1,
                                                                    queue="b"),
              Request(name="b2", cpu=1, gpu=1, queue="b"), Request(name="hi", cpu=1, gpu=1,
                                                                    queue="a", priority=5))
    placed = [d.request.name for d in qs.schedule() if d.placed]
    assert placed == ["hi", "b1"]


def test_preemption_evicts_cheapest_lower_priority_restartable_first() -> None:
    qs = _sched([Queue(name="a")], nodes=2, gpus=2)
    qs.submit(Request(name="keep", cpu=1, gpu=2, queue="a", priority=1),
              Request(name="spotty", cpu=1, gpu=2, queue="a", priority=1, restartable=True))
    assert all(d.placed for d in qs.schedule())
    qs.submit(Request(name="urgent", cpu=1, gpu=2, queue="a", priority=10))
    d = qs.schedule()[0]
    assert d.placed and d.preempted == ("spotty",)
    assert [r.name for r in qs.pending] == ["spotty"]
    qs.submit(Request(name="peer", cpu=1, gpu=2, queue="a", priority=10))
    ds = {x.request.name: x for x in qs.schedule()}
    assert ds["peer"].preempted == ("keep",)  # the last lower-priority work
    qs.submit(Request(name="equal", cpu=1, gpu=2, queue="a", priority=10))
    ds = {x.request.name: x for x in qs.schedule()}
    assert not ds["equal"].placed and not ds["equal"].preempted  # never evicts its equals


def test_gang_waits_for_all_members_and_backfill_runs_around_it() -> None:
    qs = _sched([Queue(name="a")], nodes=2, gpus=4)
    qs.submit(Request(name="small0", cpu=1, gpu=3, queue="a"))
    qs.schedule()
    gang = [Request(name=f"w{i}", cpu=1, gpu=4, queue="a", gang="g", gang_size=2)
            for i in range(2)]
    qs.submit(gang[0])
    assert not qs.schedule()[0].placed
    qs.submit(gang[1], Request(name="small1", cpu=1, gpu=1, queue="a"))
    ds = {d.request.name: d for d in qs.schedule()}
    assert not ds["w0"].placed and not ds["w1"].placed  # only one node has 4 free GPUs
    assert ds["small1"].placed  # backfilled around the waiting gang
    assert not any(n.startswith("w") for n in qs.running)


_work = st_.tuples(st_.sampled_from(["a", "b", "c"]), st_.sampled_from([0, 0.5, 1, 2]),
                   st_.integers(0, 3), st_.booleans())


@settings(max_examples=30, deadline=None, database=None)
@given(st_.lists(_work, min_size=1, max_size=25), st_.lists(st_.integers(0, 24), max_size=8))
def test_quotas_hold_and_preemption_never_evicts_higher_priority(work: list, done: list) -> None:
    queues = [Queue(name="a", quota={"gpu": 3, "cpu": 8}, cohort="c", borrowing_limit={"gpu": 2}),
              Queue(name="b", quota={"gpu": 3, "cpu": 8}, cohort="c", lending_limit={"gpu": 1}),
              Queue(name="c", quota={"gpu": 2, "cpu": 8})]
    qs = _sched(queues, nodes=2, gpus=4)
    limit = {"a": 3 + 2, "b": 3 + 1 * 0 + 3, "c": 2}  # b may borrow a's unused quota
    prio = {}
    for k, (q, g, p, rs) in enumerate(work):
        r = Request(name=f"r{k}", cpu=1, gpu=g, queue=q, priority=p, restartable=rs)
        prio[r.name] = p
        qs.submit(r)
        for d in qs.schedule():
            for v in d.preempted:
                assert prio[v] < d.request.priority or qs.queues[d.request.queue].cohort == "c"
                assert prio[v] <= d.request.priority
        for q2 in ("a", "b", "c"):
            assert qs.usage[q2]["gpu"] <= limit[q2] * 1000
        assert qs.usage["c"]["gpu"] <= 2000 and qs.usage["c"]["cpu"] <= 8000
        for i in done:
            if f"r{i}" in qs.running and i == k:
                qs.finish(f"r{i}")
    assert (qs.cluster.gfree[qs.cluster.gcap > 0] >= 0).all()


def _ff(nodes: int = 2, gpus: int = 2, **kw: object) -> QueueScheduler:
    cl = ClusterState([gpu_node(f"n{i}", gpus=gpus, cpu=64) for i in range(nodes)],
                      policy="first_fit")
    return QueueScheduler(cl, [Queue(name="default")], **kw)  # type: ignore[arg-type]


def test_gang_preemption_evicts_the_cheapest_set_that_fits_the_whole_gang() -> None:
    qs = _ff()
    qs.submit(Request(name="a", cpu=1, gpu=1, priority=1, restartable=True),
              Request(name="b", cpu=1, gpu=1, priority=1),
              Request(name="c", cpu=1, gpu=1, priority=1, restartable=True),
              Request(name="d", cpu=1, gpu=1, priority=5))
    assert all(d.placed for d in qs.schedule())  # d first (priority), then a, b, c
    assert [qs.cluster.placements[x].node for x in "dabc"] == ["n0", "n0", "n1", "n1"]
    # two members of 2 GPUs need both nodes empty: d (priority 5) may not go, so nobody goes
    big = [Request(name=f"g{i}", cpu=1, gpu=2, priority=3, gang="big", gang_size=2)
           for i in range(2)]
    qs.submit(*big)
    ds = qs.schedule()
    assert not any(d.placed or d.preempted for d in ds)
    assert set(qs.running) == set("abcd")
    # two members of 1 GPU: the restartable a and c are enough, b (not restartable) stays
    small = [Request(name=f"s{i}", cpu=1, gpu=1, priority=3, gang="small", gang_size=2)
             for i in range(2)]
    qs.submit(*small)
    ds = {d.request.name: d for d in qs.schedule()}
    assert ds["s0"].placed and ds["s1"].placed
    assert ds["s0"].preempted == ("a", "c")
    assert set(qs.running) == {"b", "d", "s0", "s1"}
    assert {r.name for r in qs.pending} >= {"a", "c", "g0", "g1"}


def test_gang_preemption_never_splits_a_running_gang() -> None:
    qs = _ff()
    qs.submit(*[Request(name=f"v{i}", cpu=1, gpu=2, priority=0, gang="v", gang_size=2)
                for i in range(2)])
    assert all(d.placed for d in qs.schedule())
    qs.submit(*[Request(name=f"h{i}", cpu=1, gpu=1, priority=9, gang="h", gang_size=2)
                for i in range(2)])
    ds = qs.schedule()
    assert all(d.placed for d in ds) and ds[0].preempted == ("v0", "v1")
    assert not {"v0", "v1"} & set(qs.running)


def test_reservation_stops_backfill_on_the_reserved_node_until_the_big_request_starts() -> None:
    qs = _ff(gpus=4, reserve_after=2)
    qs.submit(Request(name="x0", cpu=1, gpu=3), Request(name="x1", cpu=1, gpu=3))
    qs.schedule()
    qs.submit(Request(name="big", cpu=1, gpu=4), Request(name="f0", cpu=1, gpu=1))
    qs.schedule()  # big waits, f0 backfills (n0): passed over once
    assert qs.passed_over == {"big": 1} and qs.reserved_for is None
    qs.submit(Request(name="f1", cpu=1, gpu=1))
    qs.schedule()  # passed over twice: big gets a reservation
    assert qs.reserved_for == "big" and qs.reservation == {"big": "n0"}
    qs.finish("f0")  # n0 has a free GPU again, but it is held for big
    qs.submit(Request(name="f2", cpu=1, gpu=1))
    ds = {d.request.name: d for d in qs.schedule()}
    assert not ds["f2"].placed and not ds["big"].placed
    qs.finish("x0")  # n0 drains: big starts there, f2 still waits
    ds = {d.request.name: d for d in qs.schedule()}
    assert ds["big"].placed and ds["big"].placement is not None
    assert ds["big"].placement.node == "n0" and not ds["f2"].placed
    assert qs.reserved_for is None and qs.cluster.held is None


_unit = st_.tuples(st_.sampled_from(["a", "b"]), st_.sampled_from([0.5, 1, 2]),
                   st_.integers(0, 3), st_.booleans(), st_.sampled_from([1, 1, 2, 3]))


@settings(max_examples=40, deadline=None, database=None)
@given(st_.lists(_unit, min_size=1, max_size=20), st_.lists(st_.integers(0, 40), max_size=20))
def test_gangs_all_or_nothing_preemption_strictly_lower_quotas_hard(units: list,
                                                                     finish: list) -> None:
    queues = [Queue(name="a", quota={"gpu": 6}), Queue(name="b", quota={"gpu": 5})]
    cl = ClusterState([gpu_node(f"n{i}", gpus=4, cpu=16) for i in range(2)])
    qs = QueueScheduler(cl, queues, reserve_after=2)
    prio: dict[str, int] = {}
    gangs: dict[str, int] = {}
    for k, (q, g, p, rs, size) in enumerate(units):
        reqs = [Request(name=f"u{k}m{j}", cpu=1, gpu=g, queue=q, priority=p, restartable=rs,
                        gang=f"u{k}" if size > 1 else None, gang_size=size) for j in range(size)]
        if size > 1:
            gangs[f"u{k}"] = size
        for r in reqs:
            prio[r.name] = p
        qs.submit(*reqs)
        for d in qs.schedule():
            for v in d.preempted:  # strictly lower than every member of the preempting unit
                assert prio[v] < d.request.priority
        for gang, size in gangs.items():
            n = sum(1 for r in qs.running.values() if r.gang == gang)
            assert n in (0, size)
        assert qs.usage["a"]["gpu"] <= 6000 and qs.usage["b"]["gpu"] <= 5000
        assert (cl.gfree[cl.gcap > 0] >= 0).all()
        if k < len(finish):
            running = sorted(qs.running)
            if running:
                victim = qs.running[running[finish[k] % len(running)]]
                members = [r.name for r in qs.running.values()
                           if victim.gang is not None and r.gang == victim.gang] or [victim.name]
                for m in members:  # a gang ends as a whole
                    qs.finish(m)


@settings(max_examples=25, deadline=None, database=None)
@given(st_.lists(st_.sampled_from([0.5, 1, 2]), min_size=4, max_size=12),
       st_.integers(2, 4))
def test_a_gang_with_a_reservation_starts_once_work_finishes(small: list, reserve_after: int
                                                             ) -> None:
    cl = ClusterState([gpu_node(f"n{i}", gpus=4, cpu=64) for i in range(3)])
    qs = QueueScheduler(cl, [Queue(name="default")], reserve_after=reserve_after)
    seq = iter(range(10**6))

    def feed() -> None:  # a steady stream of small work that could starve the gang
        for g in small:
            qs.submit(Request(name=f"s{next(seq)}", cpu=1, gpu=g))

    feed()
    qs.schedule()
    qs.submit(*[Request(name=f"g{i}", cpu=1, gpu=4, gang="g", gang_size=2) for i in range(2)])
    for _ in range(200):
        feed()
        qs.schedule()
        if "g0" in qs.running:
            break
        oldest = min((n for n in qs.running if n.startswith("s")), key=lambda n: int(n[1:]),
                     default=None)
        if oldest is not None:
            qs.finish(oldest)
    assert "g0" in qs.running and "g1" in qs.running


def _cost(vs: list[Request]) -> tuple[int, int, int]:
    return (sum(not v.restartable for v in vs), sum(v.priority for v in vs),
            sum(v.total_gpu_milli for v in vs))


@settings(max_examples=60, deadline=None, database=None)
@given(st_.lists(st_.tuples(st_.sampled_from([0.25, 0.5, 1, 2]), st_.integers(0, 2),
                            st_.booleans()), min_size=1, max_size=24),
       st_.sampled_from([0.5, 1, 2, 4]))
def test_preemption_search_finds_the_cheapest_node(work: list, want: float) -> None:
    """The bounded search over nodes picks a victim set as cheap as trying every node."""
    cl = ClusterState([gpu_node(f"n{i}", gpus=4, cpu=64) for i in range(4)])
    qs = QueueScheduler(cl, [Queue(name="a")], reserve_after=10_000)  # no node held back
    for k, (g, p, rs) in enumerate(work):
        qs.submit(Request(name=f"r{k}", cpu=1, gpu=g, queue="a", priority=p, restartable=rs))
        qs.schedule()
    st = qs.cluster
    urgent = Request(name="urgent", cpu=1, gpu=want, queue="a", priority=5)
    before = (st.gfree.copy(), st.cpu_free.copy(), dict(st.placements))
    costs = []
    for i, node in enumerate(st.nodes):
        on = [r for r in qs.running.values() if st.placements[r.name].node == node.name]
        chosen = qs._victims_on(urgent, i, on)
        if chosen is not None:
            costs.append(_cost(chosen))
    assert (st.gfree == before[0]).all() and (st.cpu_free == before[1]).all()
    assert st.placements == before[2]  # trying a node leaves the cluster as it was
    fits_now = bool(st.fits(urgent, st.static_mask(urgent).nonzero()[0]).any())
    qs.submit(urgent)
    d = next(x for x in qs.schedule() if x.request.name == "urgent")
    if fits_now:
        assert d.placed and not d.preempted
    elif not costs:
        assert not d.placed
    else:
        victims = [r for r in (Request(name=n, cpu=1, gpu=work[int(n[1:])][0], queue="a",
                                       priority=work[int(n[1:])][1],
                                       restartable=work[int(n[1:])][2])
                               for n in d.preempted)]
        assert d.placed and _cost(victims) == min(costs)
