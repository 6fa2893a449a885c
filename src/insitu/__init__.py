"""insitu: an ML platform in one Python package.

Author pipelines with :func:`step` and :func:`pipeline`, run them with
:func:`run` (or ``insitu run``), and read results with :func:`get_run` and
:func:`list_runs`. Errors derive from :class:`insitu.errors.InsituError`.
"""

from insitu import errors
from insitu._results import Run, get_run, list_runs, run
from insitu.sdk import Elif, Else, If, on_exit, pipeline, step

__version__ = "0.1.0"

__all__ = [
    "Elif",
    "Else",
    "If",
    "Run",
    "errors",
    "get_run",
    "list_runs",
    "on_exit",
    "pipeline",
    "run",
    "step",
]
