"""``insitu.tune``: hyperparameter search as a pipeline step whose trials are steps."""

from __future__ import annotations

from typing import Any

from insitu.errors import StepOutsidePipeline
from insitu.sdk._handles import Output
from insitu.sdk._trace import caller_location, current_trace
from insitu.tune import _space
from insitu.tune._study import ALGORITHMS, EARLY_STOPPING


class Tune:
    """Call it inside a pipeline: ``insitu.tune(train, space={...}, metric="val_auc")``.

    Each trial runs ``step`` with the sampled parameters (plus the fixed keyword
    arguments) as a step of its own: resources, retries, logs, caching and placement
    like any other. The objective is the step's return value when it is a number, its
    ``[metric]`` when it returns a dict, or the last value it logged under ``metric``.
    The result (a handle) is a dict: ``best_params``, ``best_value``, ``best_trial``,
    ``best_output`` (the best trial's return value), ``n_trials``, ``study``.
    """

    uniform = staticmethod(_space.uniform)
    loguniform = staticmethod(_space.loguniform)
    integer = staticmethod(_space.integer)
    choice = staticmethod(_space.choice)

    def __call__(self, step: Any, *, space: dict[str, Any], metric: str,
                 goal: str = "maximize", algorithm: str = "tpe", max_trials: int = 20,
                 parallel: int = 1, max_failed: int | None = None,
                 early_stopping: str | None = None, timeout: float | None = None,
                 seed: int | None = None, **kwargs: Any) -> Output:
        trace = current_trace()
        file, line = caller_location()
        if trace is None:
            raise StepOutsidePipeline(f"insitu.tune was called outside a pipeline at "
                                      f"{file}:{line}",
                                      hint="call it inside a function decorated with "
                                           "@insitu.pipeline")
        name = getattr(step, "name", repr(step))
        problems = _space.check_space(space, step=name)
        if goal not in ("maximize", "minimize"):
            problems.append(f"goal must be 'maximize' or 'minimize', got {goal!r}")
        if algorithm not in ALGORITHMS:
            problems.append(f"unknown algorithm {algorithm!r}; use one of "
                            f"{', '.join(ALGORITHMS)}")
        if early_stopping not in EARLY_STOPPING:
            problems.append(f"unknown early_stopping {early_stopping!r}; use 'median', "
                            "'hyperband' or None")
        for label, v in (("max_trials", max_trials), ("parallel", parallel)):
            if not isinstance(v, int) or v < 1:
                problems.append(f"{label} must be a positive int, got {v!r}")
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
        placeholders = {p: None for p in (space if isinstance(space, dict) else {})}
        out: Output = step._record(trace, (), {**placeholders, **kwargs}, tune=cfg)
        return out


tune = Tune()
