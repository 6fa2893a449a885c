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
