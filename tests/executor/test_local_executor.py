from __future__ import annotations

from collections.abc import Iterator

import pytest

from insitu.executor import LocalExecutor, local_node
from insitu.testing.executor_conformance import ExecutorConformance


class TestLocalExecutor(ExecutorConformance):
    @pytest.fixture
    def executor(self) -> Iterator[LocalExecutor]:
        ex = LocalExecutor()
        yield ex
        ex.close()


def test_declared_inventory_overrides_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSITU_NODE_GPUS", "A100:2,T4:1")
    monkeypatch.setenv("INSITU_NODE_CPUS", "16")
    monkeypatch.setenv("INSITU_NODE_MEMORY", "64GiB")
    n = local_node()
    assert n.cpu == 16 and n.memory == 64 * 1024**3
    assert [(g.index, g.model) for g in n.gpus] == [(0, "A100"), (1, "A100"), (2, "T4")]
