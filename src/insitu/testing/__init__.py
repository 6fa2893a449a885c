"""Helpers for testing pipelines and insitu's interfaces.

- :func:`capture`: ``with insitu.testing.capture() as logged: step.fn(...)`` runs a step's
  plain function and records what it logs (``logged.metrics``, ``logged.params``,
  ``logged.artifacts``, ``logged.reports``), in memory.
- Conformance suites for every backend to pass: subclass
  :class:`~insitu.testing.store_conformance.StoreConformance` or
  :class:`~insitu.testing.executor_conformance.ExecutorConformance` in a test module
  named ``Test...`` and provide the ``store`` / ``executor`` fixture.
"""

from insitu.tracking._capture import Logged, capture

__all__ = ["Logged", "capture"]
