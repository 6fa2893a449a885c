"""Optuna studies behind tuning steps: samplers, pruners, storage on insitu's database."""

from __future__ import annotations

from typing import Any

from insitu.errors import UserError

ALGORITHMS = ("tpe", "gp", "cmaes", "random", "grid", "qmc")
EARLY_STOPPING = (None, "median", "hyperband")


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
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    if algorithm == "grid":
        from insitu.tune._space import grid

        return optuna.samplers.GridSampler(grid(space), seed=seed)
    raise UserError(f"unknown tuning algorithm {algorithm!r}",
                    hint=f"use one of {', '.join(ALGORITHMS)}")


def pruner(early_stopping: str | None) -> Any:
    import optuna

    if early_stopping is None:
        return optuna.pruners.NopPruner()
    if early_stopping == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if early_stopping == "hyperband":
        return optuna.pruners.HyperbandPruner()
    raise UserError(f"unknown early_stopping {early_stopping!r}",
                    hint="use 'median', 'hyperband' or None")


def storage(db_url: str) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.storages.RDBStorage(db_url, engine_kwargs={"connect_args": {"timeout": 30}}
                                      if db_url.startswith("sqlite") else {})


def create_study(name: str, db_url: str, cfg: dict[str, Any]) -> Any:
    import optuna

    return optuna.create_study(
        study_name=name, storage=storage(db_url), load_if_exists=True,
        direction="maximize" if cfg["goal"] == "maximize" else "minimize",
        sampler=sampler(cfg["algorithm"], cfg.get("seed"), cfg["space"]),
        pruner=pruner(cfg.get("early_stopping")))


def load_study(name: str, db_url: str) -> Any:
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage(db_url))
    except KeyError:
        raise UserError(f"no tuning study {name!r}",
                        hint="studies are named RUN/STEP; see `insitu runs`") from None


def open_trial(info: dict[str, Any]) -> Any:
    """In a trial's process: the Optuna trial it runs, for ``report`` and pruning."""
    import optuna

    st = storage(info["storage"])
    study = optuna.load_study(study_name=info["study"], storage=st,
                              pruner=pruner(info.get("early_stopping")))
    return optuna.trial.Trial(study, info["trial_id"])
