"""Waiting for the node that holds the data, or moving the data (engine._locality)."""

from __future__ import annotations

import pytest

from insitu.engine._locality import Busy, WaitOrMove
from insitu.engine._placement import Placement, Placer, Request
from insitu.executor import NodeInfo

GiB = 1 << 30


def _setup(monkeypatch: pytest.MonkeyPatch
           ) -> tuple[Placer, WaitOrMove, Request, Placement]:
    """Two 1-CPU nodes; n1 holds the 1 GiB shard and is busy, so the scheduler picks n2."""
    monkeypatch.setenv("INSITU_LINK_MBIT", "1000")  # 125 MB/s: moving 1 GiB takes ~8.6 s
    placer = Placer([NodeInfo(name="n1", cpu=1, memory=4 * GiB),
                     NodeInfo(name="n2", cpu=1, memory=4 * GiB)])
    placer.note_data("ds/part-0", "n1")
    req = Request(cpu=1, memory=GiB, inputs=(("ds/part-0", GiB),))
    first = placer.place(req, "first")
    assert isinstance(first, Placement) and first.node == "n1", "the holder wins while it has room"
    second = placer.place(req, "second")
    assert isinstance(second, Placement) and second.node == "n2"
    return placer, WaitOrMove(placer), req, second


def test_a_short_wait_beats_a_long_move(monkeypatch: pytest.MonkeyPatch) -> None:
    _, wm, req, p = _setup(monkeypatch)
    why = wm.decide("t", req, p, [Busy("n1", "scan", started=99.0)], now=100.0)
    assert why == ("waiting for node 'n1', which holds 1.0 GiB of its 1.0 GiB input: expected "
                   "to have room in ~1.0s; moving the data to 'n2' would take ~8.6s")


def test_a_holder_that_will_not_free_up_soon_is_not_waited_for(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _, wm, req, p = _setup(monkeypatch)
    # no history: an attempt that has run 20 s is expected to run about 20 s more
    assert wm.decide("t", req, p, [Busy("n1", "scan", started=80.0)], now=100.0) is None
    # with history, the median says when it ends
    wm.finished("scan", 21.0)
    assert wm.decide("t", req, p, [Busy("n1", "scan", started=80.0)], now=100.0) is not None
    wm.finished("scan", 60.0)
    wm.finished("scan", 60.0)
    assert wm.decide("t", req, p, [Busy("n1", "scan", started=80.0)], now=100.0) is None


def test_a_task_waits_no_longer_than_moving_would_take(monkeypatch: pytest.MonkeyPatch) -> None:
    _, wm, req, p = _setup(monkeypatch)
    busy = [Busy("n1", "scan", started=99.0)]
    assert wm.decide("t", req, p, busy, now=100.0) is not None  # starts waiting at 100
    busy = [Busy("n1", "scan", started=104.0)]  # the holder took other work meanwhile
    assert wm.decide("t", req, p, busy, now=105.0) is not None  # waited 5 s, ~1 s more
    assert wm.decide("t", req, p, busy, now=108.0) is None      # 8 + 4 > 8.6: move now


def test_waiters_queue_behind_each_other(monkeypatch: pytest.MonkeyPatch) -> None:
    _, wm, req, p = _setup(monkeypatch)
    busy = [Busy("n1", "scan", started=97.0)]   # ~3 s left
    assert wm.decide("a", req, p, busy, now=100.0) is not None  # waits ~3 s
    assert wm.decide("b", req, p, busy, now=100.0) is not None  # waits ~6 s
    assert wm.decide("c", req, p, busy, now=100.0) is None      # ~9 s: moving is faster
    wm.new_pass()
    assert wm.decide("c", req, p, busy, now=100.0) is not None


def test_observed_transfers_set_the_price_of_moving(monkeypatch: pytest.MonkeyPatch) -> None:
    _, wm, req, p = _setup(monkeypatch)
    busy = [Busy("n1", "scan", started=90.0)]   # ~10 s left: longer than 8.6 s at 1 Gbit/s
    assert wm.decide("t", req, p, busy, now=100.0) is None
    for _ in range(10):
        wm.moved(100 << 20, 4.0)  # transfers here run at 25 MB/s (200 Mbit/s)
    assert wm.decide("t", req, p, busy, now=100.0) is not None  # now 1 GiB takes ~40 s


def test_no_wait_for_a_holder_the_task_may_not_use(monkeypatch: pytest.MonkeyPatch) -> None:
    placer = Placer([NodeInfo(name="n1", cpu=1, memory=4 * GiB,
                              labels={"insitu.dev/spot": "true"}),
                     NodeInfo(name="n2", cpu=1, memory=4 * GiB)])
    placer.note_data("ds/part-0", "n1")
    req = Request(cpu=1, memory=GiB, inputs=(("ds/part-0", GiB),))  # not restartable
    p = placer.place(req, "t")
    assert isinstance(p, Placement) and p.node == "n2"
    wm = WaitOrMove(placer)
    assert wm.decide("t", req, p, [Busy("n1", "other", started=99.9)], now=100.0) is None


def test_nothing_to_decide_next_to_the_data_or_without_inputs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    placer, wm, req, _ = _setup(monkeypatch)
    on_holder = Placement(node="n1", cpu=1, memory=GiB)
    assert wm.decide("t", req, on_holder, [Busy("n1", "s", 99.0)], now=100.0) is None
    plain = Request(cpu=1, memory=GiB)
    assert wm.decide("t", plain, Placement(node="n2", cpu=1, memory=GiB),
                     [Busy("n1", "s", 99.0)], now=100.0) is None
