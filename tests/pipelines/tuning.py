from __future__ import annotations

import math

import insitu


@insitu.step(cpu=0.5)
def quadratic(x: float, y: int, offset: float = 0.0) -> dict:  # type: ignore[type-arg]
    return {"loss": (x - 2.0) ** 2 + (y - 3) ** 2 + offset, "x": x}


@insitu.pipeline
def tune_quadratic(trials: int = 12, algorithm: str = "tpe") -> None:
    result = insitu.tune(quadratic, space={"x": insitu.tune.uniform(-5, 5),
                                           "y": insitu.tune.integer(0, 6)},
                         metric="loss", goal="minimize", algorithm="tpe", max_trials=12,
                         parallel=2, seed=1, offset=0.5)
    report_best(result)


@insitu.step
def report_best(result: dict) -> float:  # type: ignore[type-arg]
    return float(result["best_value"])


@insitu.step(cpu=0.5)
def curve(lr: float) -> float:
    """A training curve: bad learning rates plateau high; reports every epoch."""
    loss = 10.0
    for epoch in range(8):
        loss = loss * (1 - min(lr, 0.9)) + abs(math.log10(lr) + 1)
        insitu.report(loss, epoch)
    insitu.log_metric("final_loss", loss)
    return loss


@insitu.pipeline
def tune_pruned() -> None:
    insitu.tune(curve, space={"lr": insitu.tune.loguniform(1e-4, 1.0)}, metric="final_loss",
                goal="minimize", algorithm="random", max_trials=14, parallel=2, seed=3,
                early_stopping="median")


@insitu.step
def no_metric(x: float) -> str:
    return "nothing useful"


@insitu.pipeline
def tune_no_metric() -> None:
    insitu.tune(no_metric, space={"x": insitu.tune.uniform(0, 1)}, metric="auc", max_trials=10)


@insitu.step
def always_fails(x: float) -> float:
    raise RuntimeError("the data loader is broken")


@insitu.pipeline
def tune_all_fail() -> None:
    insitu.tune(always_fails, space={"x": insitu.tune.uniform(0, 1)}, metric="auc",
                max_trials=20, max_failed=3, parallel=2)


@insitu.pipeline
def tune_bad_space() -> None:
    insitu.tune(quadratic, space={}, metric="loss", goal="minimise")


@insitu.step(cpu=0.1, memory="256MiB", gpu=0.25)
def gpu_trial(x: float) -> dict:  # type: ignore[type-arg]
    import os
    import time

    t0 = time.time()
    time.sleep(1.5)
    return {"score": x, "gpu": os.environ["CUDA_VISIBLE_DEVICES"], "t0": t0, "t1": time.time()}


@insitu.pipeline
def tune_on_gpus() -> None:
    insitu.tune(gpu_trial, space={"x": insitu.tune.uniform(0, 1)}, metric="score",
                algorithm="random", max_trials=8, parallel=8, seed=0)


@insitu.step(cpu=0.5)
def slow_trial(x: float) -> float:
    import time

    time.sleep(0.4)
    return x


@insitu.pipeline
def tune_slow() -> None:
    insitu.tune(slow_trial, space={"x": insitu.tune.uniform(0, 1)}, metric="v",
                algorithm="random", max_trials=10, parallel=2, seed=0)


def make_quadratic_pipeline(algorithm: str):  # type: ignore[no-untyped-def]
    @insitu.pipeline(name=f"quad-{algorithm}")
    def p() -> None:
        insitu.tune(quadratic, space={"x": insitu.tune.uniform(-5, 5),
                                      "y": insitu.tune.integer(0, 6)},
                    metric="loss", goal="minimize", algorithm=algorithm, max_trials=5,
                    parallel=1, seed=2)

    return p
