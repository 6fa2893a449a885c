"""Within a run, ready steps are offered free resources by priority, then in pipeline order."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import insitu

sys.path.insert(0, str(Path(__file__).parents[1] / "pipelines"))


def test_a_higher_priority_step_starts_first(home: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    import priorities

    monkeypatch.setenv("INSITU_NODE_CPUS", "1")  # room for one step at a time
    run = insitu.run(priorities.by_priority)
    (a,) = run.attempts("first")
    (b,) = run.attempts("urgent")
    assert a.started_at is not None and b.started_at is not None
    assert b.started_at <= a.started_at
    assert b.ended_at is not None and b.ended_at <= a.started_at  # one at a time: urgent first
