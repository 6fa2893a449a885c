"""The Store conformance suite: every Store backend must pass it unchanged.

Usage::

    class TestMyStore(StoreConformance):
        @pytest.fixture
        def store(self, tmp_path):
            s = MyStore(...)
            yield s
            s.close()
"""

from __future__ import annotations

import dataclasses
import time

import pytest

from insitu.errors import NotFound
from insitu.store import AttemptRecord, CacheEntry, RunRecord, Store, TaskRecord


def make_run(run_id: str = "run000000001", **kw: object) -> RunRecord:
    base: dict[str, object] = dict(id=run_id, pipeline="p", state="pending",
                                   spec={"name": "p", "steps": []}, params={"n": 1},
                                   created_at=time.time())
    base.update(kw)
    return RunRecord(**base)  # type: ignore[arg-type]


class StoreConformance:
    """Behaviour every :class:`~insitu.store.Store` must show (see ``store/_base.py``)."""

    def test_put_and_get_run_roundtrip(self, store: Store) -> None:
        r = make_run(params={"a": [1, 2], "b": {"c": None}}, labels={"team": "x"})
        store.put(r)
        got = store.get_run(r.id)
        assert got == r
        assert got is not r

    def test_put_is_an_upsert(self, store: Store) -> None:
        r = make_run()
        store.put(r)
        store.put(dataclasses.replace(r, state="running", engine_pid=42))
        got = store.get_run(r.id)
        assert (got.state, got.engine_pid) == ("running", 42)
        assert len(store.list_runs()) == 1

    def test_get_run_by_unique_prefix(self, store: Store) -> None:
        store.put(make_run("abcdef000001"), make_run("abxyz0000002"))
        assert store.get_run("abc").id == "abcdef000001"
        with pytest.raises(NotFound, match="ambiguous"):
            store.get_run("ab")

    def test_missing_run_raises_not_found_naming_it(self, store: Store) -> None:
        with pytest.raises(NotFound, match="nosuchrun") as e:
            store.get_run("nosuchrun")
        assert isinstance(e.value, KeyError)

    def test_list_runs_filters_and_orders_newest_first(self, store: Store) -> None:
        now = time.time()
        store.put(make_run("r1", pipeline="a", state="succeeded", created_at=now - 3),
                  make_run("r2", pipeline="b", state="failed", created_at=now - 2),
                  make_run("r3", pipeline="a", state="failed", created_at=now - 1))
        assert [r.id for r in store.list_runs()] == ["r3", "r2", "r1"]
        assert [r.id for r in store.list_runs(pipeline="a")] == ["r3", "r1"]
        assert [r.id for r in store.list_runs(state="failed")] == ["r3", "r2"]
        assert [r.id for r in store.list_runs(limit=1)] == ["r3"]

    def test_tasks_keep_creation_order(self, store: Store) -> None:
        store.put(make_run("r1"))
        tasks = [TaskRecord(run_id="r1", id=f"t[{i}]", step_id="t", state="pending", seq=i,
                            map_index=i) for i in (2, 0, 1)]
        store.put(*tasks)
        assert [t.id for t in store.list_tasks("r1")] == ["t[0]", "t[1]", "t[2]"]
        assert store.list_tasks("other") == []

    def test_task_outputs_and_errors_roundtrip(self, store: Store) -> None:
        t = TaskRecord(run_id="r1", id="s", step_id="s", state="failed", attempts=2,
                       output={"kind": "inline", "value": [1, {"a": 2.5}]},
                       error={"kind": "user", "frames": [{"line": 3}]},
                       resources={"cpu": 0.5, "memory": 2**33})
        store.put(t)
        assert store.list_tasks("r1") == [t]

    def test_attempts_listed_per_task_in_order(self, store: Store) -> None:
        atts = [AttemptRecord(run_id="r1", task_id=tid, number=n, state="failed",
                              peak_memory=5 * 2**30, cpu_time=1.5)
                for tid in ("b", "a") for n in (2, 1)]
        store.put(*atts)
        assert [(a.task_id, a.number) for a in store.list_attempts("r1")] == [
            ("a", 1), ("a", 2), ("b", 1), ("b", 2)]
        assert [a.number for a in store.list_attempts("r1", "b")] == [1, 2]
        assert store.list_attempts("r1")[0].peak_memory == 5 * 2**30

    def test_put_is_atomic(self, store: Store) -> None:
        good = make_run("ok1")
        bad = TaskRecord(run_id="ok1", id="t", step_id="t", state="pending",
                         output={"x": object()})  # not JSON: the write must fail whole
        with pytest.raises(Exception):  # noqa: B017 - any error, as long as nothing lands
            store.put(good, bad)
        with pytest.raises(NotFound):
            store.get_run("ok1")

    def test_cache_get_and_delete(self, store: Store) -> None:
        e = CacheEntry(key="k1", step="s", output={"kind": "inline", "value": 1},
                       run_id="r", task_id="s", created_at=1.0)
        store.put(e)
        assert store.get_cache(["k1", "k2"]) == {"k1": e}
        store.delete_cache(["k1", "absent"])
        assert store.get_cache(["k1"]) == {}

    def test_many_cache_keys_in_one_lookup(self, store: Store) -> None:
        entries = [CacheEntry(key=f"k{i}", step="s", output={}, run_id="r", task_id=f"s[{i}]",
                              created_at=1.0) for i in range(1200)]
        store.put(*entries)
        assert len(store.get_cache([e.key for e in entries])) == 1200

    def test_delete_run_removes_tasks_and_attempts(self, store: Store) -> None:
        store.put(make_run("r9"), TaskRecord(run_id="r9", id="t", step_id="t", state="pending"),
                  AttemptRecord(run_id="r9", task_id="t", number=1, state="running"))
        store.delete_run("r9")
        with pytest.raises(NotFound):
            store.get_run("r9")
        assert store.list_tasks("r9") == [] and store.list_attempts("r9") == []

    def test_records_returned_do_not_change_after_later_writes(self, store: Store) -> None:
        r = make_run("r5")
        store.put(r)
        first = store.get_run("r5")
        store.put(dataclasses.replace(r, state="failed"))
        assert first.state == "pending"
        with pytest.raises(dataclasses.FrozenInstanceError):
            first.state = "x"  # type: ignore[misc]

    def test_select_and_delete_any_record_type(self, store: Store) -> None:
        from insitu.store import MetricRecord, ParamRecord

        pts = [MetricRecord(run_id="r1", task_id="t", attempt=1, name="loss", step=s,
                            value=1.0 / (s + 1), timestamp=float(s)) for s in (2, 0, 1)]
        store.put(*pts, ParamRecord(run_id="r1", task_id="t", name="lr", value=0.1),
                  ParamRecord(run_id="r1", task_id="u", name="lr", value=[1, "x"]))
        got = store.select(MetricRecord, run_id="r1", name="loss")
        assert [p.step for p in got] == [0, 1, 2] and got[0].value == 1.0
        assert [p.value for p in store.select(ParamRecord, run_id="r1")] == [0.1, [1, "x"]]
        store.delete(ParamRecord, run_id="r1", task_id="u")
        assert len(store.select(ParamRecord, run_id="r1")) == 1
        with pytest.raises(ValueError, match="no field 'nope'"):
            store.select(ParamRecord, nope=1)

    def test_aliases_move_atomically_and_runs_in_use_are_kept(self, store: Store) -> None:
        from insitu.errors import Conflict
        from insitu.store import AliasRecord, ModelVersionRecord

        store.put(make_run("m1"))
        store.put(ModelVersionRecord(name="fraud", version=1, run_id="m1", task_id="train",
                                     output={"kind": "inline", "value": 1}, created_at=1.0),
                  AliasRecord(name="fraud", alias="champion", version=1, updated_at=1.0))
        store.put(AliasRecord(name="fraud", alias="champion", version=2, updated_at=2.0))
        (alias,) = store.select(AliasRecord, name="fraud")
        assert alias.version == 2
        with pytest.raises(Conflict, match="fraud v1"):
            store.delete_run("m1")
        assert store.get_run("m1").id == "m1"

    def test_insert_refuses_an_existing_record_and_writes_nothing(self, store: Store) -> None:
        from insitu.errors import Conflict
        from insitu.store import ModelVersionRecord

        def v(n: int, run: str = "r") -> ModelVersionRecord:
            return ModelVersionRecord(name="m", version=n, run_id=run, task_id="t", output={},
                                      created_at=1.0)

        store.insert(v(1))
        with pytest.raises(Conflict):
            store.insert(v(2), v(1, run="other"))
        assert [(x.version, x.run_id) for x in store.select(ModelVersionRecord, name="m")] == [
            (1, "r")]

    def test_claim_run_is_a_compare_and_set_lease(self, store: Store) -> None:
        store.put(make_run("lease1", supervised=True),
                  make_run("lease2", supervised=True, state="succeeded"),
                  make_run("lease3"))  # not supervised: no server engine takes it
        assert store.claimable_runs(100.0, 10) == ["lease1"]
        assert store.claim_run("lease1", "a", until=110.0, now=100.0)
        assert not store.claim_run("lease1", "b", until=111.0, now=101.0)  # a holds it
        assert store.claim_run("lease1", "a", until=120.0, now=105.0)      # a renews
        assert store.leases(119.0) == {"lease1": "a"}
        assert store.claimable_runs(119.0, 10) == []
        assert store.claimable_runs(121.0, 10) == ["lease1"]
        assert store.claim_run("lease1", "b", until=131.0, now=121.0)      # a's expired
        assert not store.claim_run("lease1", "a", until=140.0, now=122.0)  # a lost it
        assert not store.claim_run("lease2", "a", until=140.0, now=122.0)  # ended
        assert not store.claim_run("lease3", "a", until=140.0, now=122.0)  # not supervised
        assert not store.claim_run("nosuch", "a", until=140.0, now=122.0)
        store.release_run("lease1", "a")  # not a's: nothing happens
        assert store.leases(122.0) == {"lease1": "b"}
        store.release_run("lease1", "b")
        assert store.leases(122.0) == {}
        assert store.claim_run("lease1", "c", until=150.0, now=123.0)

    def test_writing_a_run_keeps_its_lease(self, store: Store) -> None:
        r = make_run("lease4", supervised=True)
        store.put(r)
        assert store.claim_run(r.id, "a", until=200.0, now=100.0)
        store.put(dataclasses.replace(r, state="running", heartbeat_at=101.0))
        assert store.leases(150.0) == {"lease4": "a"}
        assert store.get_run(r.id).supervised
