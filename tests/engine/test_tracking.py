"""Metrics, params and artifacts logged inside steps end up in the store with the run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import insitu
from insitu.store import LoggedArtifact, MetricRecord, ParamRecord, open_store

sys.path.insert(0, str(Path(__file__).parents[1] / "pipelines"))
import tracked  # noqa: E402


def test_logged_metrics_params_and_artifacts_are_stored(home: Path) -> None:
    run = insitu.run(tracked.tracked, lr=0.5, epochs=3)
    store = open_store()
    loss = store.select(MetricRecord, run_id=run.id, name="loss")
    assert [m.step for m in loss] == [0, 1, 2]
    assert [m.value for m in loss] == pytest.approx([0.5, 0.25, 0.125])
    assert store.select(MetricRecord, run_id=run.id, name="val_acc")[0].value == 0.875
    params = {p.name: p.value for p in store.select(ParamRecord, run_id=run.id)}
    assert params == {"lr": 0.5, "epochs": 3, "optimizer": "sgd"}
    (art,) = store.select(LoggedArtifact, run_id=run.id)
    assert art.name == "notes.txt" and art.output["serializer"] == "file"


def test_logging_outside_a_run_records_in_memory() -> None:
    # step.fn(...) in a test: see tests/sdk/test_capture.py
    with insitu.testing.capture() as logged:
        insitu.log_metric("x", 1.0)
    assert logged.metrics == {"x": [1.0]}


def test_cli_show_metrics_and_compare(cli, home: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import json

    target = f"{Path(tracked.__file__)}:tracked"
    assert cli("run", target, "-p", "lr=0.1").returncode == 0
    assert cli("run", target, "-p", "lr=0.3").returncode == 0
    a, b = [r["id"] for r in json.loads(cli("runs", "--json").stdout)]
    show = cli("show", a).stdout
    assert "loss" in show and "val_acc" in show and "optimizer" in show
    m = cli("metrics", a, "fit")
    assert m.returncode == 0 and "loss" in m.stdout
    png = tmp_path / "m.png"
    m = cli("metrics", a, "--png", str(png))
    assert m.returncode == 0 and png.stat().st_size > 1000
    c = cli("compare", a, b)
    assert c.returncode == 0
    out = c.stdout
    assert "lr" in out and "0.3" in out and "0.1" in out and "val_acc" in out
    assert "*" in out  # differences are marked
    bad = cli("metrics", a, "nosuchstep")
    assert bad.returncode == 2 and "no step 'nosuchstep'" in bad.stderr
