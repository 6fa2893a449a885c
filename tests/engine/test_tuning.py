"""Tuning: Optuna chooses trials, each trial is a step, the study lives in insitu's database."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import insitu
from insitu.errors import StepFailed, ValidationError

sys.path.insert(0, str(Path(__file__).parents[1] / "pipelines"))
import tuning  # noqa: E402


def test_tune_finds_the_minimum_and_returns_best_params_and_output(home: Path) -> None:
    run = insitu.run(tuning.tune_quadratic)
    res = run.output("quadratic")
    assert res["n_trials"] == 12 and set(res["best_params"]) == {"x", "y"}
    assert res["best_value"] == pytest.approx(res["best_output"]["loss"])
    assert run.output("report_best") == pytest.approx(res["best_value"])
    trials = [t for t in run.tasks() if t.step_id == "quadratic" and t.map_index is not None]
    assert len(trials) == 12 and all(t.state == "succeeded" for t in trials)
    losses = [t.output["value"]["loss"] for t in trials]  # type: ignore[index]
    assert res["best_value"] == pytest.approx(min(losses))
    from insitu.store import TrialRecord, open_store

    recs = open_store().select(TrialRecord, run_id=run.id, step_id="quadratic")
    assert len(recs) == 12 and {r.state for r in recs} == {"complete"}
    assert min(r.value for r in recs) == res["best_value"]  # type: ignore[type-var]


def test_trials_are_cached_like_any_step(home: Path) -> None:
    first = insitu.run(tuning.tune_quadratic).output("quadratic")
    run = insitu.run(tuning.tune_quadratic)
    trials = [t for t in run.tasks() if t.step_id == "quadratic" and t.map_index is not None]
    cached = [t.output["value"]["loss"] for t in trials if t.state == "cached"]  # type: ignore[index]
    # the same seed asks the same 10 start-up trials: cache hits, told to the new study
    assert len(cached) >= 10 and first["n_trials"] == 12
    assert run.output("quadratic")["best_value"] <= min(cached)


def test_pruned_trials_end_as_pruned_not_failed(home: Path) -> None:
    run = insitu.run(tuning.tune_pruned)
    trials = [t for t in run.tasks() if t.step_id == "curve" and t.map_index is not None]
    states = [t.state for t in trials]
    assert "pruned" in states and "failed" not in states
    assert run.state == "succeeded"
    assert run.output("curve")["best_value"] < 10


def test_missing_metric_is_reported_after_the_first_trial(home: Path) -> None:
    with pytest.raises(StepFailed):
        insitu.run(tuning.tune_no_metric)
    run = insitu.list_runs(limit=1)[0]
    parent = run.task("no_metric")
    assert parent.state == "failed"
    assert "finished without the metric 'auc'" in parent.error["message"]  # type: ignore[index]
    ran = [t for t in run.tasks() if t.step_id == "no_metric" and t.state == "succeeded"]
    assert len(ran) == 1, "it must stop after the first trial, not spend the budget"


def test_all_trials_failing_stops_at_max_failed_with_the_common_cause(home: Path) -> None:
    run = insitu.run(tuning.tune_all_fail, raise_on_failure=False)
    parent = run.task("always_fails")
    msg = parent.error["message"]  # type: ignore[index]
    assert "stopped after 3 failed trials (max_failed=3)" in msg
    assert "RuntimeError: the data loader is broken" in msg
    tried = [t for t in run.tasks() if t.step_id == "always_fails" and t.map_index is not None
             and t.state == "failed"]
    assert 3 <= len(tried) <= 4


def test_bad_space_and_goal_are_validation_errors() -> None:
    with pytest.raises(ValidationError) as e:
        tuning.tune_bad_space.compile()
    text = str(e.value)
    assert "search space of 'quadratic' is empty" in text
    assert "goal must be 'maximize' or 'minimize', got 'minimise'" in text


def test_tune_cli_run_and_show(cli, home: Path) -> None:  # type: ignore[no-untyped-def]
    target = f"{Path(tuning.__file__)}:quadratic"
    r = cli("tune", "run", target, "--space", '{"x": "uniform(-5, 5)", "y": "int(0, 6)"}',
            "--metric", "loss", "--goal", "minimize", "--trials", "6", "--parallel", "2",
            "-p", "offset=1.0")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "best trial" in r.stdout and "6 complete" in r.stdout
    assert "parameter importance" in r.stdout
    bad = cli("tune", "run", target, "--space", '{"x": "normal(0, 1)"}', "--metric", "loss")
    assert bad.returncode == 2 and "cannot read 'normal(0, 1)'" in bad.stderr
    bad = cli("tune", "run", target, "--space", '{"x": "uniform(5, 1)"}', "--metric", "loss")
    assert bad.returncode == 2 and "low (5.0) must be below high (1.0)" in bad.stderr
    bad = cli("tune", "show", "nosuchrun")
    assert bad.returncode == 2 and "no run 'nosuchrun'" in bad.stderr


def test_eight_quarter_gpu_trials_pack_onto_two_gpus(home: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSITU_NODE_GPUS", "A100:2")
    monkeypatch.setenv("INSITU_NODE_CPUS", "8")
    run = insitu.run(tuning.tune_on_gpus)
    outs = [t.output["value"] for t in run.tasks()  # type: ignore[index]
            if t.step_id == "gpu_trial" and t.map_index is not None]
    assert len(outs) == 8
    assert sorted(o["gpu"] for o in outs) == ["0"] * 4 + ["1"] * 4
    latest_start = max(o["t0"] for o in outs)
    earliest_end = min(o["t1"] for o in outs)
    assert latest_start < earliest_end, "all eight trials ran at the same time"


def test_interrupted_tuning_resumes_where_it_stopped(home: Path, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import time

    from insitu.store import TrialRecord, open_store

    env = {**os.environ, "INSITU_HOME": str(home)}
    target = f"{Path(tuning.__file__)}:tune_slow"
    proc = subprocess.Popen([sys.executable, "-m", "insitu", "run", target, "--plain"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = None
    deadline = time.time() + 60
    done_before: dict[int, float | None] = {}
    while time.time() < deadline:
        time.sleep(0.1)
        if not (home / "insitu.db").exists():
            continue
        store = open_store(f"sqlite:///{home / 'insitu.db'}")
        runs = store.list_runs()
        if runs:
            recs = store.select(TrialRecord, run_id=runs[0].id, step_id="slow_trial")
            done = [r for r in recs if r.state == "complete"]
            if len(done) >= 3:
                break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert store is not None
    rid = store.list_runs()[0].id
    done_before = {r.number: r.value for r in store.select(TrialRecord, run_id=rid)
                   if r.state == "complete"}
    assert 3 <= len(done_before) < 10
    time.sleep(0.3)
    r = subprocess.run([sys.executable, "-m", "insitu", "resume", rid, "--plain"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    recs = {x.number: x for x in store.select(TrialRecord, run_id=rid)}
    assert len(recs) == 10 and all(x.state == "complete" for x in recs.values())
    for n, v in done_before.items():
        assert recs[n].value == v, "a finished trial was run again or changed"
    attempts = {a.task_id: a for a in store.list_attempts(rid)}
    for n in done_before:
        assert attempts[f"slow_trial[{n}]"].number == 1
    assert store.get_run(rid).state == "succeeded"


@pytest.mark.parametrize("algorithm", ["tpe", "gp", "cmaes", "random", "grid", "qmc"])
def test_every_algorithm_runs(home: Path, algorithm: str) -> None:
    run = insitu.run(tuning.make_quadratic_pipeline(algorithm))
    res = run.output("quadratic")
    assert res["n_trials"] == 5 and set(res["best_params"]) == {"x", "y"}
