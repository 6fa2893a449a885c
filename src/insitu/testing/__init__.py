"""Conformance suites for insitu's interfaces, for every backend to pass.

Subclass :class:`~insitu.testing.store_conformance.StoreConformance` or
:class:`~insitu.testing.executor_conformance.ExecutorConformance` in a test module
named ``Test...`` and provide the ``store`` / ``executor`` fixture.
"""
