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

    def test_put_if_writes_only_over_the_run_it_expects(self, store: Store) -> None:
        run = make_run("cas1", state="pending")
        store.put(run)
        task = TaskRecord(run_id="cas1", id="t", step_id="t", state="pending")
        cancelled = dataclasses.replace(run, state="cancelled", ended_at=2.0)
        assert store.put_if("cas1", {"state": "pending", "engine_pid": None},
                            cancelled, task) is True
        assert store.get_run("cas1").state == "cancelled"
        # a writer that read the run before that change finds it changed and writes nothing
        started = dataclasses.replace(run, state="running", engine_pid=42)
        other = dataclasses.replace(task, state="running")
        assert store.put_if("cas1", {"state": "pending", "engine_pid": None},
                            started, other) is False
        assert store.get_run("cas1").state == "cancelled"
        assert [t.state for t in store.list_tasks("cas1")] == ["pending"]
        assert store.put_if("absent-run", {"state": "pending"}, task) is False

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
    # -- paging, authentication and the monitoring aggregates ----------------------------

    def test_list_runs_pages_by_cursor_and_can_leave_the_spec_unread(self, store: Store
                                                                      ) -> None:
        store.put(*(make_run(f"p{i}", created_at=100.0 + i // 2, project="pg",
                             spec={"name": "p", "steps": [{"id": "big"}]}) for i in range(7)))
        seen: list[str] = []
        before = None
        while True:
            page = store.list_runs(project="pg", limit=2, before=before, with_spec=False)
            seen += [r.id for r in page]
            if len(page) < 2:
                break
            before = (page[-1].created_at, page[-1].id)
        # newest first, ties on created_at broken by id, each run once
        assert seen == ["p6", "p5", "p4", "p3", "p2", "p1", "p0"]
        assert store.list_runs(project="pg", limit=1, with_spec=False)[0].spec == {}
        assert store.list_runs(project="pg", limit=1)[0].spec["steps"] == [{"id": "big"}]

    def test_list_runs_of_a_schedule_are_those_its_ticks_name(self, store: Store) -> None:
        from insitu.store import TickRecord

        store.put(*(make_run(f"s{i}", created_at=200.0 + i, project="sp") for i in range(5)),
                  make_run("elsewhere", created_at=300.0, project="other"))
        ticks = [TickRecord(project="sp", schedule="nightly", at=float(i), state="fired",
                            kind="cron", run_id=f"s{i}", recorded_at=1.0, by="t")
                 for i in (0, 2, 3)]
        ticks += [TickRecord(project="sp", schedule="nightly", at=9.0, state="skipped",
                             kind="cron", reason="busy", recorded_at=1.0, by="t"),
                  TickRecord(project="sp", schedule="hourly", at=1.0, state="fired",
                             kind="cron", run_id="s1", recorded_at=1.0, by="t"),
                  TickRecord(project="other", schedule="nightly", at=1.0, state="fired",
                             kind="cron", run_id="elsewhere", recorded_at=1.0, by="t")]
        store.put(*ticks)
        first = store.list_runs(project="sp", schedule="nightly", limit=2, with_spec=False)
        assert [r.id for r in first] == ["s3", "s2"]
        rest = store.list_runs(project="sp", schedule="nightly", limit=2, with_spec=False,
                               before=(first[-1].created_at, first[-1].id))
        assert [r.id for r in rest] == ["s0"]
        assert [r.id for r in store.list_runs(project="sp", schedule="hourly")] == ["s1"]
        assert store.list_runs(project="sp", schedule="none") == []
        with pytest.raises(ValueError, match="within a project"):
            store.list_runs(schedule="nightly")

    def test_token_holder_reads_token_user_and_roles_together(self, store: Store) -> None:
        from insitu.store import MemberRecord, TokenRecord, UserRecord

        u = UserRecord(name="ana", created_at=1.0, admin=True, email="a@x")
        tok = TokenRecord(id="t1", user="ana", digest="d" * 64, created_at=2.0,
                          project="vision", expires_at=9.0)
        store.put(u, tok, TokenRecord(id="t2", user="gone", digest="e" * 64, created_at=2.0),
                  MemberRecord(project="vision", user="ana", role="owner"),
                  MemberRecord(project="nlp", user="ana", role="viewer"),
                  MemberRecord(project="nlp", user="bob", role="owner"))
        found = store.token_holder("t1")
        assert found is not None
        assert found[0] == tok and found[1] == u
        assert sorted((m.project, m.role) for m in found[2]) == [("nlp", "viewer"),
                                                                  ("vision", "owner")]
        assert store.token_holder("t2") == (store.select(TokenRecord, id="t2")[0], None, [])
        assert store.token_holder("nope") is None
        store.delete(MemberRecord, project="nlp", user="ana")  # a changed role shows at once
        found = store.token_holder("t1")
        assert found is not None and [m.project for m in found[2]] == ["vision"]

    def _monitored(self, store: Store, now: float) -> None:
        def task(run: str, tid: str, state: str, **kw: object) -> TaskRecord:
            return TaskRecord(run_id=run, id=tid, step_id=tid, state=state,
                              **kw)  # type: ignore[arg-type]

        store.put(
            make_run("a1", project="a", state="running", engine_pid=1, heartbeat_at=now - 2),
            make_run("a2", project="a", state="running", engine_pid=2, heartbeat_at=now - 60),
            make_run("a3", project="a", state="succeeded"),
            make_run("b1", project="b", state="pending", engine_pid=3, heartbeat_at=now - 1),
            task("a1", "fit", "running", node="n1", started_at=now - 5, ready_at=now - 8,
                 resources={"cpu": 2.0, "memory": 2**30, "gpu": 1.0, "gpu_type": "A100"}),
            task("a1", "prep", "succeeded", node="n1", started_at=now - 20, ended_at=now - 8,
                 ready_at=now - 20.5, resources={"cpu": 1.0, "memory": 2**20, "gpu": 0.0}),
            task("a1", "eval", "pending", ready_at=now - 3),
            task("a1", "report", "pending"),
            task("a2", "fit", "running", node="n1", started_at=now - 90, ready_at=now - 90,
                 resources={"cpu": 8.0, "memory": 2**31, "gpu": 0.0}),  # its engine is gone
            task("a3", "x", "failed", node="n2", started_at=now - 400, ended_at=now - 100,
                 ready_at=now - 401),
            task("a3", "y", "cached"),
            task("b1", "t", "running", node="n2", started_at=now - 1, ready_at=now,  # skew
                 resources={"cpu": 0.5, "memory": 2**29, "gpu": 0.5, "gpu_type": None}),
            task("b1", "u", "pending", ready_at=now - 1))

    def test_monitoring_counts_tasks_and_queues(self, store: Store) -> None:
        self._monitored(store, float(int(time.time())))  # whole seconds: exact differences
        assert store.count_tasks() == {("a", "running"): 2, ("a", "succeeded"): 1,
                                       ("a", "pending"): 2, ("a", "failed"): 1,
                                       ("a", "cached"): 1, ("b", "running"): 1,
                                       ("b", "pending"): 1}
        assert store.queue_depth() == {"a": 1, "b": 1}  # ready and pending, in live runs

    def test_monitoring_histograms_of_task_times(self, store: Store) -> None:
        self._monitored(store, float(int(time.time())))  # whole seconds: exact differences
        run = store.task_time_histogram("run", [10.0, 20.0, 1000.0])
        assert set(run) == {("a", "succeeded"), ("a", "failed")}
        assert run["a", "succeeded"].counts == (0, 1, 1)
        assert run["a", "succeeded"].count == 1
        assert run["a", "succeeded"].total == pytest.approx(12.0, abs=1e-3)
        assert run["a", "failed"].counts == (0, 0, 1)
        wait = store.task_time_histogram("queue_wait", [0.5, 1.0, 5.0])
        assert (wait["a",].count, wait["a",].counts) == (4, (2, 3, 4))  # 0, 0.5, 1, 3
        assert wait["a",].total == pytest.approx(4.5, abs=1e-3)
        assert wait["b",].counts == (1, 1, 1) and wait["b",].total == 0.0  # skew counts 0
        with pytest.raises(ValueError, match="unknown task time"):
            store.task_time_histogram("nope", [1.0])

    def test_monitoring_allocations_and_engines(self, store: Store) -> None:
        now = float(int(time.time()))
        self._monitored(store, now)
        alloc = store.allocated(alive_since=now - 15)
        assert set(alloc) == {("a", "n1", "A100"), ("b", "n2", None)}  # a2's engine is gone
        a = alloc["a", "n1", "A100"]
        assert (a.cpu, a.memory, a.gpu, a.tasks) == (2.0, 2**30, 1.0, 1)
        b = alloc["b", "n2", None]
        assert (b.cpu, b.memory, b.gpu, b.tasks) == (0.5, 2**29, 0.5, 1)
        beats = store.engine_heartbeats(alive_since=now - 15)
        assert (beats["a"].live, beats["a"].stale) == (1, 1)
        assert beats["a"].newest == pytest.approx(now - 2)
        assert (beats["b"].live, beats["b"].stale) == (1, 0)
        assert store.engine_heartbeats(alive_since=now + 1)["a"].live == 0
