"""Trivial pipelines for benchmarks/overhead.py."""

import insitu


@insitu.step
def inc(x: int) -> int:
    return x + 1


@insitu.step
def count(xs: list[int]) -> int:
    return len(xs)


@insitu.step
def items(n: int) -> list[int]:
    return list(range(n))


@insitu.pipeline
def chain(x: int = 0) -> None:
    inc(inc(inc(x)))


@insitu.pipeline
def fan(n: int = 1000) -> None:
    count(inc.map(items(n)))


@insitu.pipeline
def fan_light(n: int = 1000, cpu: float = 0.1) -> None:
    count(inc.options(cpu=cpu).map(items(n)))
