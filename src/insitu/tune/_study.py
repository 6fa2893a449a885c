"""Optuna studies behind tuning steps.

Optuna's samplers and pruners decide; the study's state lives in insitu's store as
:class:`~insitu.store.TrialRecord` rows, written in the same transaction as the trial's
task. An in-memory Optuna study is rebuilt from those rows whenever one is needed: by the
engine (to ask for trials), by a trial's process (to decide pruning), and by
``insitu tune show``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from insitu.errors import UserError

ALGORITHMS = ("tpe", "gp", "cmaes", "random", "grid", "qmc")
EARLY_STOPPING = (None, "median", "hyperband")
FINISHED = {"complete": "COMPLETE", "pruned": "PRUNED", "fail": "FAIL"}


def sampler(algorithm: str, seed: int | None, space: dict[str, Any]) -> Any:
    import optuna

    if algorithm == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if algorithm == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if algorithm == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if algorithm == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if algorithm == "qmc":
        import warnings

        with warnings.catch_warnings():  # "experimental" in Optuna; we test it here
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    if algorithm == "grid":
        from insitu.tune._space import grid

        return optuna.samplers.GridSampler(grid(space), seed=seed)
    raise UserError(f"unknown tuning algorithm {algorithm!r}",
                    hint=f"use one of {', '.join(ALGORITHMS)}")


MEDIAN_STARTUP_TRIALS = 3  # trials that finish before the median pruner prunes any
MEDIAN_WARMUP_STEPS = 1    # reports of a trial before it may be pruned


def pruner(early_stopping: str | None, *, startup_trials: int | None = None,
           warmup_steps: int | None = None) -> Any:
    import optuna

    if early_stopping is None:
        return optuna.pruners.NopPruner()
    if early_stopping == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=MEDIAN_STARTUP_TRIALS if startup_trials is None else startup_trials,
            n_warmup_steps=MEDIAN_WARMUP_STEPS if warmup_steps is None else warmup_steps)
    if early_stopping == "hyperband":
        return optuna.pruners.HyperbandPruner()
    raise UserError(f"unknown early_stopping {early_stopping!r}",
                    hint="use 'median', 'hyperband' or None")


def new_study(cfg: dict[str, Any], *, sampler_obj: Any = None) -> Any:
    """An in-memory Optuna study configured like the tuning step ``cfg``."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        direction="maximize" if cfg["goal"] == "maximize" else "minimize",
        sampler=sampler_obj or sampler(cfg["algorithm"], cfg.get("seed"), cfg["space"]),
        pruner=pruner(cfg.get("early_stopping"), startup_trials=cfg.get("startup_trials"),
                      warmup_steps=cfg.get("warmup_steps")))


def frozen(rec: Any, dists: dict[str, Any]) -> Any:
    """A finished TrialRecord as an Optuna FrozenTrial."""
    import optuna

    return optuna.trial.create_trial(
        params=rec.params, distributions=dists,
        value=rec.value if rec.state == "complete" else None,
        intermediate_values={int(k): v for k, v in rec.intermediate.items()},
        state=getattr(optuna.trial.TrialState, FINISHED[rec.state]))


def add_finished(study: Any, records: Iterable[Any], dists: dict[str, Any]) -> dict[int, int]:
    """Add finished trial records to ``study``; map our trial numbers to Optuna's."""
    out = {}
    for rec in sorted(records, key=lambda r: r.number):
        if rec.state in FINISHED:
            study.add_trial(frozen(rec, dists))
            out[rec.number] = len(study.trials) - 1
    return out


_stores: dict[str, Any] = {}


def should_prune(info: dict[str, Any], history: dict[int, float]) -> bool:
    """In a trial's process: does the pruner stop this trial, given its reports so far?"""
    import optuna

    from insitu.store import TrialRecord, open_store
    from insitu.tune._space import distributions

    if info["db_url"] not in _stores:
        _stores[info["db_url"]] = open_store(info["db_url"])
    store = _stores[info["db_url"]]
    cfg = info["cfg"]
    dists = distributions(cfg["space"])
    study = new_study(cfg, sampler_obj=optuna.samplers.RandomSampler(seed=0))
    add_finished(study, store.select(TrialRecord, run_id=info["run_id"],
                                     step_id=info["step_id"]), dists)
    trial = study.ask()
    for step, value in sorted(history.items()):
        trial.report(value, step)
    return bool(trial.should_prune())


def load_records(db_url: str, run_id: str, step_id: str) -> list[Any]:
    from insitu.store import TrialRecord, open_store

    return open_store(db_url).select(TrialRecord, run_id=run_id, step_id=step_id)
