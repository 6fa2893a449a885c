"""Tuning: ``insitu.tune(step, space=..., metric=...)`` inside a pipeline.

Contract: a tuning step is a step whose tasks are trials. Optuna's samplers and
pruners choose the trials (not reimplemented); the study lives in insitu's store as
one ``TrialRecord`` per trial, written in the same transaction as the trial's task,
named ``RUN/STEP``, so an interrupted tuning resumes with ``insitu resume``. A trial
stopped by early stopping ends *pruned*, not failed. See ``_api.Tune`` for the result.
"""

from insitu.tune._api import Tune, tune

__all__ = ["Tune", "tune"]
