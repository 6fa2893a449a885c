"""Executors: where attempts run. See ``_base.py`` for the contract and
:mod:`insitu.testing.executor_conformance` for the suite every executor passes."""

from insitu.executor._base import AttemptExit, Executor, GpuInfo, LaunchRequest, NodeInfo
from insitu.executor._local import LocalExecutor, local_node, read_result

__all__ = ["AttemptExit", "Executor", "GpuInfo", "LaunchRequest", "LocalExecutor", "NodeInfo",
           "local_node", "read_result"]
