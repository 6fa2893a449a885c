"""Tuning: progress counts pruned trials, a pruned trial says where it stopped, the median
pruner can be set up, and bad tuning input gets one clear message."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import insitu
from insitu.errors import UserError, ValidationError

sys.path.insert(0, str(Path(__file__).parents[1] / "pipelines"))
import tuning  # noqa: E402

TUNING = str(Path(tuning.__file__))
SPACE = '{"lr": "loguniform(1e-4, 1.0)"}'


def test_progress_counts_pruned_trials_and_each_says_its_step(cli, home: Path) -> None:  # type: ignore[no-untyped-def]
    r = cli("run", f"{TUNING}:tune_pruned", "--plain")
    assert r.returncode == 0, r.stdout + r.stderr
    run = insitu.list_runs(limit=1)[0]
    trials = [t for t in run.tasks() if t.step_id == "curve" and t.map_index is not None]
    pruned = [t for t in trials if t.state == "pruned"]
    assert pruned and len(trials) == 14
    row = next(line for line in r.stdout.splitlines() if line.strip().startswith("│ curve"))
    assert "14/14 done" in row and f"{len(pruned)} pruned" in row, row
    for t in pruned:
        err = t.error or {}
        assert isinstance(err.get("step"), int)
        assert err["message"] == f"pruned at step {err['step']} by the tuner"
    show = cli("tune", "show", f"{run.id}/curve").stdout
    assert "14/14 trials ended" in show, show
    assert show.count("pruned at step") == len(pruned), show


def test_median_pruner_start_up_trials_can_be_set(home: Path) -> None:
    @insitu.pipeline
    def patient() -> None:
        insitu.tune(tuning.curve, space={"lr": insitu.tune.loguniform(1e-4, 1.0)},
                    metric="final_loss", goal="minimize", algorithm="random", max_trials=14,
                    parallel=2, seed=3, early_stopping="median", startup_trials=100)

    run = insitu.run(patient)  # the same trials tune_pruned prunes, with no pruning yet
    states = {t.state for t in run.tasks() if t.step_id == "curve" and t.map_index is not None}
    assert states == {"succeeded"}, states
    assert run.record.spec["steps"][0]["tune"]["startup_trials"] == 100


def test_median_pruner_options_from_the_command_line(cli, home: Path) -> None:  # type: ignore[no-untyped-def]
    r = cli("tune", "run", f"{TUNING}:curve", "--space", SPACE, "--metric", "final_loss",
            "--goal", "minimize", "--algorithm", "random", "--seed", "3", "--trials", "8",
            "--parallel", "2", "--early-stopping", "median", "--startup-trials", "50",
            "--warmup-steps", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "8 complete" in r.stdout and "pruned" not in r.stdout.split("trials")[0]
    spec = insitu.list_runs(limit=1)[0].record.spec["steps"][0]["tune"]
    assert (spec["startup_trials"], spec["warmup_steps"]) == (50, 2)


@pytest.mark.parametrize(("args", "message"), [
    (["--space", '{"x": "uniform(1)"}'], "uniform() takes 2 numbers (low, high), got 1"),
    (["--space", '{"x": "uniform(\\"a\\", 1)"}'], "low must be a finite number, got 'a'"),
    (["--space", '{"x": "int(1, 2, 3)"}'], "int() takes 2 numbers (low, high), got 3"),
    (["--space", SPACE, "--seed", "-1"], "Invalid value for '--seed'"),
    (["--space", SPACE, "--trials", "100000000000"], "Invalid value for '--trials'"),
    (["--space", SPACE, "--timeout", "nan"], "must be a positive number of seconds"),
    (["--space", SPACE, "--startup-trials", "3"], "give it with early_stopping='median'"),
])
def test_bad_tuning_input_gets_one_clear_message(cli, home: Path, args: list[str],  # type: ignore[no-untyped-def]
                                                 message: str) -> None:
    r = cli("tune", "run", f"{TUNING}:curve", "--metric", "final_loss", *args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_bad_bounds_in_python_name_the_users_line() -> None:
    line = sys._getframe().f_lineno + 2
    with pytest.raises(UserError) as e:
        insitu.tune.uniform("a", 1)  # type: ignore[arg-type]
    assert f"{__file__}:{line}" in e.value.message and "got 'a'" in e.value.message
    with pytest.raises(UserError, match="choice needs a list"):
        insitu.tune.choice("abc")  # type: ignore[arg-type]


def test_bad_seed_and_budget_are_validation_errors() -> None:
    @insitu.pipeline
    def bad() -> None:
        insitu.tune(tuning.quadratic, space={"x": insitu.tune.uniform(0, 1)}, metric="loss",
                    seed=-1, max_trials=10**12, warmup_steps=2)

    with pytest.raises(ValidationError) as e:
        bad.compile()
    text = str(e.value)
    assert "seed must be an int from 0 to 4294967295, got -1" in text
    assert "max_trials must be an int from 1 to 100,000" in text
    assert "warmup_steps sets up the median pruner" in text
