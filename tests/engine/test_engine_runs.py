"""End-to-end runs through the Python API: real worker processes, a real SQLite file."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import insitu
from insitu.errors import ParameterError, ResourceError, StepFailed
from insitu.store import open_store

sys.path.insert(0, str(Path(__file__).parents[1] / "pipelines"))
import artifacts as artifact_pipelines  # noqa: E402
import basic  # noqa: E402


@pytest.fixture
def marks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    p = tmp_path / "marks.txt"
    monkeypatch.setenv("INSITU_TEST_MARKS", str(p))
    monkeypatch.setattr(basic, "MARKS", str(p))
    return p


def lines(p: Path) -> list[str]:
    return p.read_text().splitlines() if p.exists() else []


def test_fan_out_fan_in_and_branches(home: Path, marks: Path) -> None:
    run = insitu.run(basic.fanout, n=5)
    assert run.state == "succeeded"
    assert run.output("square") == [0, 1, 4, 9, 16]
    assert run.output("total") == 30
    assert run.output("shout") == "BIG"
    states = {t.id: t.state for t in run.tasks()}
    assert states["shout-2"] == "skipped" and states["whisper"] == "skipped"
    assert sorted(x for x in lines(marks) if x.startswith("square")) == [
        f"square:{i}" for i in range(5)]


def test_elif_and_else_branches(home: Path, marks: Path) -> None:
    run = insitu.run(basic.fanout, n=2, mode="loud")
    assert run.output("shout-2") == "FORCED"
    assert {t.id: t.state for t in run.tasks()}["whisper"] == "skipped"
    run = insitu.run(basic.fanout, n=2)
    assert run.output("whisper") == "small"
    assert {t.id: t.state for t in run.tasks()}["shout"] == "skipped"


def test_max_parallel_is_respected(home: Path, marks: Path) -> None:
    run = insitu.run(basic.fanout, n=6)
    spans = sorted((a.started_at, a.ended_at) for a in run.attempts()
                   if a.task_id.startswith("square["))
    for t, _ in spans:
        overlapping = sum(1 for s, e in spans if s <= t < e)
        assert overlapping <= 2


def test_fan_in_of_a_list_of_handles(home: Path, marks: Path) -> None:
    run = insitu.run(basic.chain_of_sleeps, n=3, seconds=0.05)
    assert run.output("many") == [0, 1, 2]
    assert run.output("collect") == 2 and run.output("collect-2") == 3


def test_second_run_is_all_cache_hits(home: Path, marks: Path) -> None:
    insitu.run(basic.fanout, n=4)
    ran = len(lines(marks))
    run = insitu.run(basic.fanout, n=4)
    assert len(lines(marks)) == ran, "a cached step ran again"
    tasks = run.tasks()
    executed = [t for t in tasks if t.state not in ("cached", "skipped") and t.map_size is None]
    assert executed == []
    assert run.output("total") == 14
    run = insitu.run(basic.fanout, n=4, no_cache=True)
    assert len(lines(marks)) == 2 * ran


def test_changed_parameter_misses_the_cache_only_where_it_matters(home: Path,
                                                                  marks: Path) -> None:
    insitu.run(basic.fanout, n=3)
    before = lines(marks)
    insitu.run(basic.fanout, n=4)
    new = lines(marks)[len(before):]
    assert "make_list" in new and "square:3" in new
    assert "square:0" not in new, "unchanged items must be cache hits"


def test_cache_version_invalidates(home: Path, marks: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    insitu.run(basic.cache_demo)
    insitu.run(basic.cache_demo)
    assert lines(marks).count("versioned") == 1
    bumped = basic.versioned.options(cache_version="2")
    monkeypatch.setattr(basic, "versioned", bumped)

    @insitu.pipeline
    def cache_demo2(x: int = 1) -> None:
        bumped(x)

    insitu.run(cache_demo2)
    assert lines(marks).count("versioned") == 2


def test_cache_hit_needs_the_bytes(home: Path) -> None:
    run = insitu.run(artifact_pipelines.all_kinds)
    digest = run.task("make_array").output["digest"]  # type: ignore[index]
    blob = home / "artifacts" / digest[:2] / digest
    assert blob.exists()
    blob.unlink()
    store = open_store()
    key = run.task("make_array").cache_key
    assert store.get_cache([key])  # type: ignore[list-item]
    run2 = insitu.run(artifact_pipelines.all_kinds)
    assert run2.task("make_array").state == "succeeded", "stale entry must not count as a hit"
    assert blob.exists()
    assert run2.task("make_frame").state == "cached"
    assert run2.output("make_array").sum() == 66


def test_artifacts_of_every_kind_flow_between_steps(home: Path) -> None:
    run = insitu.run(artifact_pipelines.all_kinds)
    out = run.output("check")
    assert out == {"arr_sum": 66.0, "df_cols": ["a", "b", "c", "d"], "df_dtype": "float32",
                   "file_head": "a,b,c,d", "file_name": "frame.csv",
                   "dir_files": ["a.txt", "sub/b.txt"], "obj": 7}
    refs = {t.id: t.output for t in run.tasks()}
    assert refs["make_array"]["serializer"] == "npy"  # type: ignore[index]
    assert refs["make_frame"]["serializer"] == "parquet"  # type: ignore[index]
    assert refs["write_file"]["serializer"] == "file"  # type: ignore[index]
    assert refs["write_dir"]["serializer"] == "dir"  # type: ignore[index]
    assert refs["make_object"]["serializer"] == "pickle"  # type: ignore[index]


def test_retries_with_backoff_then_success(home: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSITU_TEST_COUNTER", str(tmp_path / "counter"))
    run = insitu.run(basic.retrying, fail_times=2)
    assert run.output("flaky") == "ok after 3"
    atts = run.attempts("flaky")
    assert [a.state for a in atts] == ["failed", "failed", "succeeded"]
    assert atts[0].error["type"] == "ConnectionError"  # type: ignore[index]
    assert atts[1].started_at >= atts[0].ended_at + 0.05  # type: ignore[operator]


def test_retry_on_limits_what_is_retried(home: Path) -> None:
    with pytest.raises(StepFailed) as e:
        insitu.run(basic.not_retried)
    assert e.value.step == "wrong_kind"
    run = insitu.list_runs(limit=1)[0]
    assert [a.state for a in run.attempts("wrong_kind")] == ["failed"]


def test_exit_handler_gets_the_final_status(home: Path, marks: Path) -> None:
    with pytest.raises(StepFailed) as e:
        insitu.run(basic.failing_with_exit)
    assert "ZeroDivisionError" in str(e.value)
    assert "exit:failed:broken" in lines(marks)
    run = insitu.list_runs(limit=1)[0]
    assert run.state == "failed"
    assert run.output("notify") == "failed"
    insitu.run(basic.passing_with_exit)
    assert "exit:succeeded:" in lines(marks)


def test_timeout_is_reported(home: Path) -> None:
    run = insitu.run(basic.timing_out, raise_on_failure=False)
    t = run.task("too_slow")
    assert t.state == "failed" and t.error["kind"] == "timeout"  # type: ignore[index]
    assert t.ended_at - t.started_at < 10  # type: ignore[operator]


def test_out_of_memory_stops_only_that_step(home: Path, marks: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSITU_NODE_CPUS", "4")
    run = insitu.run(basic.oom, seconds=2.0, raise_on_failure=False)
    assert run.state == "failed"
    hog = run.task("hog")
    err = hog.error or {}
    assert hog.state == "failed" and err["kind"] == "oom"
    assert err["memory_limit"] == 300 * 1024**2
    assert 0 < err["peak_memory"] <= 330 * 1024**2
    assert err["suggested_memory"] == "768MiB"
    assert run.task("neighbour").state == "succeeded"
    assert "neighbour" in lines(marks)


def test_gpus_are_handed_out_through_cuda_visible_devices(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSITU_NODE_GPUS", "T4:1,A100:1")
    run = insitu.run(basic.gpus)
    assert run.output("whole") == {"GREETING": "hi", "CUDA_VISIBLE_DEVICES": "1"}
    parts = {run.output("part1")["CUDA_VISIBLE_DEVICES"],  # type: ignore[index]
             run.output("part2")["CUDA_VISIBLE_DEVICES"]}  # type: ignore[index]
    assert len(parts) == 1 and parts <= {"0", "1"}, "two half-GPU steps pack onto one GPU"


def test_unsatisfiable_request_is_refused_before_running(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSITU_NODE_GPUS", "T4:1")
    with pytest.raises(ResourceError) as e:
        insitu.run(basic.gpus, share=0.5)
    msg = str(e.value)
    assert "step 'whole'" in msg and "1 GPU of type A100" in msg
    assert "1 x T4" in msg
    assert insitu.list_runs() == []


def test_resources_from_parameters(home: Path) -> None:
    with pytest.raises(ResourceError, match="900.0 TiB"):
        insitu.run(basic.too_big)
    with pytest.raises(insitu.errors.UserError, match="step 'total': invalid memory 'loads'"):
        insitu.run(basic.too_big, mem="loads")
    assert insitu.run(basic.too_big, mem="512MiB").output("total") == 1


def test_bad_parameters_are_all_reported(home: Path) -> None:
    with pytest.raises(ParameterError) as e:
        insitu.run(basic.fanout, n="five", nn=3)
    msg = str(e.value)
    assert "unknown parameter 'nn' (did you mean 'n'?)" in msg
    assert "parameter 'n' expects int" in msg


def test_unserialisable_output_fails_with_a_clear_error(home: Path) -> None:
    run = insitu.run(basic.bad_output, raise_on_failure=False)
    err = run.task("unserialisable").error or {}
    assert err["kind"] == "serialization"
    assert "step 'unserialisable' returned a _thread.lock" in err["message"]


def test_get_run_and_list_runs(home: Path) -> None:
    run = insitu.run(basic.fanout, n=1)
    assert insitu.get_run(run.id[:6]).output("total") == 0
    assert [r.id for r in insitu.list_runs(pipeline="fanout")] == [run.id]
    assert insitu.list_runs(pipeline="nope") == []
    with pytest.raises(insitu.errors.NotFound) as e:
        run.output("totl")
    assert "no step 'totl'" in str(e.value) and "did you mean 'total'" in str(e.value)


def test_runs_use_their_own_home(home: Path) -> None:
    insitu.run(basic.fanout, n=1)
    assert (home / "insitu.db").exists()
    assert os.environ["INSITU_HOME"] == str(home)
