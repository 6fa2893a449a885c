"""Pipelines whose bodies compute with their parameters as plain Python values."""

from __future__ import annotations

import insitu


@insitu.step(cpu=0.5)
def square(x: int) -> int:
    return x * x


@insitu.step(cpu=0.5)
def total(xs: list[int]) -> int:
    return sum(xs)


@insitu.step(cpu=0.5)
def tag(s: str) -> str:
    return s


@insitu.pipeline
def squares(n: int = 3, mode: str = "fast", tries: int = 0) -> None:
    ys = square.options(retries=tries).map(list(range(n)))
    if mode == "fast":
        total(ys)
    else:
        tag(f"slow-{n}")


@insitu.step(cpu=0.5)
def quad(x: float) -> float:
    return (x - 1.0) ** 2


@insitu.pipeline
def tuned(seed: int = 1, trials: int = 3) -> None:
    insitu.tune(quad, space={"x": insitu.tune.uniform(-3, 3)}, metric="loss", goal="minimize",
                algorithm="random", max_trials=trials, seed=seed)


@insitu.pipeline
def tuned_by_output() -> None:
    n = total([1, 2])
    insitu.tune(quad, space={"x": insitu.tune.uniform(-3, 3)}, metric="loss", max_trials=2,
                seed=n)


@insitu.pipeline
def map_over_int(n: int = 3) -> None:
    square.map(n)


@insitu.pipeline
def needs_n(n: int) -> None:
    square.map(list(range(n)))


@insitu.pipeline
def passes_n(n: int) -> None:
    square(n)


@insitu.pipeline
def maps_required_int(n: int) -> None:
    square.map(n)
