"""Unit-testing steps that log (issue 10, defect 9): ``step.fn(...)`` outside a run records
tracking calls in memory; ``insitu.testing.capture()`` reads them."""

from __future__ import annotations

from pathlib import Path

import pytest

import insitu
from insitu.errors import StepOutsidePipeline, ValidationError


@insitu.step
def train(lr: float, epochs: int = 3) -> float:
    insitu.log_params(lr=lr, epochs=epochs)
    loss = 1.0
    for epoch in range(epochs):
        loss *= 1 - lr
        insitu.log_metric("loss", loss)
        insitu.report(loss, epoch)
    return loss


@insitu.step
def save(folder: str) -> str:
    p = Path(folder) / "model.txt"
    p.write_text("weights")
    insitu.log_artifact(p, name="model")
    return str(p)


def test_step_fn_that_logs_runs_and_its_logs_can_be_read(tmp_path: Path) -> None:
    with insitu.testing.capture() as logged:
        loss = train.fn(0.5)
        save.fn(str(tmp_path))
    assert loss == pytest.approx(0.125)
    assert logged.metrics["loss"] == pytest.approx([0.5, 0.25, 0.125])
    assert logged.series("loss") == [(0, 0.5), (1, 0.25), (2, 0.125)]
    assert logged.last("objective") == pytest.approx(0.125)
    assert logged.params == {"lr": 0.5, "epochs": 3}
    assert logged.artifacts == {"model": (tmp_path / "model.txt").resolve()}
    assert logged.reports == [(0, 0.5), (1, 0.25), (2, 0.125)]


def test_without_capture_step_fn_still_runs() -> None:
    assert train.fn(0.5, epochs=1) == 0.5


def test_captures_nest_and_do_not_leak() -> None:
    with insitu.testing.capture() as outer:
        insitu.log_metric("a", 1)
        with insitu.testing.capture() as inner:
            insitu.log_metric("b", 2)
        insitu.log_metric("a", 3)
    assert outer.metrics == {"a": [1.0, 3.0]} and inner.metrics == {"b": [2.0]}


def test_pruning_path_can_be_tested() -> None:
    with insitu.testing.capture(prune_at=1) as logged, pytest.raises(insitu.TrialPruned):
        train.fn(0.5)
    assert logged.reports == [(0, 0.5), (1, 0.25)]


def test_bad_metric_values_are_still_refused() -> None:
    with insitu.testing.capture(), pytest.raises(insitu.errors.UserError, match="is nan"):
        insitu.log_metric("x", float("nan"))


def test_logging_in_a_pipeline_body_is_a_clear_problem() -> None:
    @insitu.pipeline
    def p() -> None:
        insitu.log_metric("x", 1)
        train(0.1)

    with pytest.raises(ValidationError, match="while the pipeline is being defined"):
        p.compile()


def test_outside_pipeline_message_recommends_capture() -> None:
    with pytest.raises(StepOutsidePipeline) as e:
        train(0.1)
    assert "insitu.testing.capture()" in (e.value.hint or "")
