"""insitu: an ML platform in one Python package.

Author pipelines with :func:`step` and :func:`pipeline`, run them with
:func:`run` (or ``insitu run``), and read results with :func:`get_run` and
:func:`list_runs`. Errors derive from :class:`insitu.errors.InsituError`.
"""

from typing import TYPE_CHECKING, Any

from insitu import errors
from insitu.sdk import Elif, Else, If, on_exit, pipeline, step
from insitu.tracking import TrialPruned, log_artifact, log_metric, log_metrics, log_params, report
from insitu.tune import tune

if TYPE_CHECKING:
    from insitu._results import Run, get_run, list_runs, run
    from insitu.datasets import dataset, shard_path

__version__ = "0.1.0"

__all__ = [
    "Elif",
    "Else",
    "If",
    "Run",
    "TrialPruned",
    "dataset",
    "datasets",
    "endpoints",
    "errors",
    "get_run",
    "list_runs",
    "log_artifact",
    "log_metric",
    "log_metrics",
    "log_params",
    "models",
    "on_exit",
    "pipeline",
    "report",
    "run",
    "shard_path",
    "step",
    "testing",
    "train",
    "tune",
]


def __getattr__(name: str) -> Any:
    # the results API pulls in the store (SQLAlchemy); workers never need it
    if name in ("Run", "get_run", "list_runs", "run"):
        from insitu import _results

        return getattr(_results, name)
    if name in ("dataset", "shard_path"):
        from insitu import datasets

        return getattr(datasets, name)
    if name in ("models", "datasets", "testing", "endpoints", "train"):
        import importlib

        return importlib.import_module(f"insitu.{name}")
    raise AttributeError(f"module 'insitu' has no attribute {name!r}")


def __dir__() -> list[str]:
    # the lazily loaded names (run, get_run, models, ...) are part of the API too
    return sorted({*globals(), *__all__})
