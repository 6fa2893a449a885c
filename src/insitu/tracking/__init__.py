"""Tracking inside steps: metrics, parameters and artifacts, kept with the run.

Contract: calls are cheap appends to the attempt's own journal file
(``runs/<run>/metrics/<task>.<attempt>.jsonl``), which the engine moves into the
store when the attempt ends, whatever the backend. Outside a run (``step.fn(...)``
in a test or a notebook) they record in memory: read them with
``with insitu.testing.capture() as logged:``. Called in a pipeline body while it is
traced, they raise :class:`insitu.errors.UserError`.
"""

from insitu.tracking._log import (
                                  TrialPruned,
                                  log_artifact,
                                  log_metric,
                                  log_metrics,
                                  log_params,
                                  report,
)
from insitu.tracking._read import read_journal

__all__ = ["TrialPruned", "log_artifact", "log_metric", "log_metrics", "log_params",
           "read_journal", "report"]
