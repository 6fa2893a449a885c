"""``insitu.tune``: hyperparameter search as a pipeline step whose trials are steps."""

from __future__ import annotations

from typing import Any

from insitu.errors import StepOutsidePipeline
from insitu.sdk._handles import Handle, Output
from insitu.sdk._trace import caller_location, current_trace
from insitu.tune import _space
from insitu.tune._study import ALGORITHMS, EARLY_STOPPING

MAX_TRIALS = 100_000    # a budget beyond this is a typo, not a study
MAX_PARALLEL = 10_000
MAX_SEED = 2**32 - 1    # what Optuna's samplers (numpy) accept


class Tune:
    """Call it inside a pipeline: ``insitu.tune(train, space={...}, metric="val_auc")``.

    Each trial runs ``step`` with the sampled parameters (plus the fixed keyword
    arguments) as a step of its own: resources, retries, logs, caching and placement
    like any other. The objective is the step's return value when it is a number, its
    ``[metric]`` when it returns a dict, or the last value it logged under ``metric``.
    The result (a handle) is a dict: ``best_params``, ``best_value``, ``best_trial``,
    ``best_output`` (the best trial's return value), ``n_trials``, ``study``.

    ``early_stopping="median"`` prunes a trial whose report (``insitu.report``) is worse
    than the median of earlier trials at the same step, once ``startup_trials`` trials
    (default 3) have finished and after the trial's first ``warmup_steps`` reports
    (default 1).
    """

    uniform = staticmethod(_space.uniform)
    loguniform = staticmethod(_space.loguniform)
    integer = staticmethod(_space.integer)
    choice = staticmethod(_space.choice)

    def __call__(self, step: Any, *, space: dict[str, Any], metric: str,
                 goal: str = "maximize", algorithm: str = "tpe", max_trials: int = 20,
                 parallel: int = 1, max_failed: int | None = None,
                 early_stopping: str | None = None, timeout: float | None = None,
                 seed: int | None = None, startup_trials: int | None = None,
                 warmup_steps: int | None = None, **kwargs: Any) -> Output:
        trace = current_trace()
        file, line = caller_location()
        if trace is None:
            raise StepOutsidePipeline(f"insitu.tune was called outside a pipeline at "
                                      f"{file}:{line}",
                                      hint="call it inside a function decorated with "
                                           "@insitu.pipeline")
        name = getattr(step, "name", repr(step))
        problems = _space.check_space(space, step=name)
        # an option given as a handle (a step's output, a parameter without a value) is
        # reported by the compiler, at the same line, as not known at compile time

        def known(v: Any) -> bool:
            return not isinstance(v, Handle)

        if goal not in ("maximize", "minimize"):
            problems.append(f"goal must be 'maximize' or 'minimize', got {goal!r}")
        if algorithm not in ALGORITHMS:
            problems.append(f"unknown algorithm {algorithm!r}; use one of "
                            f"{', '.join(ALGORITHMS)}")
        if early_stopping not in EARLY_STOPPING:
            problems.append(f"unknown early_stopping {early_stopping!r}; use 'median', "
                            "'hyperband' or None")
        for label, v, top in (("max_trials", max_trials, MAX_TRIALS),
                              ("parallel", parallel, MAX_PARALLEL)):
            if known(v) and (isinstance(v, bool) or not isinstance(v, int)
                             or not 1 <= v <= top):
                problems.append(f"{label} must be an int from 1 to {top:,}, got {v!r}")
        if seed is not None and known(seed) and (
                isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED):
            problems.append(f"seed must be an int from 0 to {MAX_SEED}, got {seed!r}")
        if timeout is not None and known(timeout) and (isinstance(timeout, bool)
                                    or not isinstance(timeout, int | float)
                                    or not 0 < timeout < float("inf")):
            problems.append(f"timeout must be a positive number of seconds, got {timeout!r}")
        for label, n in (("startup_trials", startup_trials), ("warmup_steps", warmup_steps)):
            if n is None:
                continue
            if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_TRIALS:
                problems.append(f"{label} must be an int from 0 to {MAX_TRIALS:,}, got {n!r}")
            elif early_stopping != "median":
                problems.append(f"{label} sets up the median pruner; give it with "
                                f"early_stopping='median' (got {early_stopping!r})")
        if max_failed is not None and (not isinstance(max_failed, int) or max_failed < 1):
            problems.append(f"max_failed must be a positive int, got {max_failed!r}")
        if not isinstance(metric, str) or not metric:
            problems.append("metric must name the value to optimise, e.g. metric='val_auc'")
        params = list(step.signature.parameters) if hasattr(step, "signature") \
            else []
        missing = [p for p in (space if isinstance(space, dict) else {}) if p not in params]
        if missing:
            problems.append(f"the search space names {', '.join(missing)}, which "
                            f"{name}() does not take (its parameters: {', '.join(params)})")
        for p in problems:
            trace.problem(p, file=file, line=line, step=name,
                          hint="see the insitu.tune docstring")
        cfg = {"space": space if not problems else {}, "metric": metric, "goal": goal,
               "algorithm": algorithm, "max_trials": max_trials, "parallel": parallel,
               "max_failed": max_failed, "early_stopping": early_stopping,
               "timeout": timeout, "seed": seed}
        if startup_trials is not None:
            cfg["startup_trials"] = startup_trials
        if warmup_steps is not None:
            cfg["warmup_steps"] = warmup_steps
        placeholders = {p: None for p in (space if isinstance(space, dict) else {})}
        out: Output = step._record(trace, (), {**placeholders, **kwargs}, tune=cfg)
        return out


tune = Tune()
