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
