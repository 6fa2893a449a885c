"""The engine's placement adapter over insitu.scheduler: data locality and dead nodes."""

from __future__ import annotations

from insitu.engine._placement import Placement, Placer, Request
from insitu.executor import NodeInfo

GiB = 1024**3


def nodes() -> list[NodeInfo]:
    return [NodeInfo(name=f"n{i}", cpu=2, memory=8 * GiB) for i in range(3)]


def test_a_step_goes_where_its_data_is() -> None:
    p = Placer(nodes())
    p.note_data("events/part-7", "n2")
    got = p.place(Request(cpu=1, memory=GiB, inputs=(("events/part-7", 5 * GiB),)))
    assert isinstance(got, Placement) and got.node == "n2"
    plain = p.place(Request(cpu=1, memory=GiB))
    assert isinstance(plain, Placement)


def test_a_busy_holder_does_not_stall_the_step() -> None:
    p = Placer(nodes())
    p.note_data("events/part-7", "n2")
    hog = p.place(Request(cpu=2, memory=GiB))
    assert isinstance(hog, Placement)
    if hog.node != "n2":  # fill n2 whatever the packing chose first
        p.release(hog)
        hog = p.place(Request(cpu=2, memory=GiB, inputs=(("events/part-7", 1),)))
        assert isinstance(hog, Placement) and hog.node == "n2"
    got = p.place(Request(cpu=1, memory=GiB, inputs=(("events/part-7", 5 * GiB),)))
    assert isinstance(got, Placement) and got.node != "n2", "it moves the data instead"


def test_dropped_nodes_keep_what_runs_elsewhere_reserved() -> None:
    p = Placer(nodes())
    a = p.place(Request(cpu=2, memory=GiB))
    assert isinstance(a, Placement)
    gone = {n for n in p.names() if n != a.node}
    kept = p.drop_nodes(gone, [(Request(cpu=2, memory=GiB), a)])
    assert kept == {0: a} and p.names() == {a.node}
    assert isinstance(p.place(Request(cpu=1, memory=GiB)), str), "its node is still full"
