"""Pipelines for the CLI tests: map items that fail in a library, quiet and chatty steps."""

from __future__ import annotations

import sys

import insitu


def lookup(table: dict[str, list[int]], key: str) -> int:
    import pandas as pd

    frame = pd.DataFrame(table)
    return int(frame[key].sum())  # a KeyError raised inside pandas


@insitu.step
def items(n: int) -> list[int]:
    return list(range(n))


@insitu.step
def evaluate(i: int) -> int:
    print(f"evaluating item {i}")
    print(f"item {i} on stderr", file=sys.stderr)
    return lookup({"a": [1, 2]}, "b" if i == 1 else "a")


@insitu.step(cpu=0.5)
def bad_lookup() -> int:
    return lookup({"a": [1, 2]}, "b")


@insitu.step(cpu=0.5)
def leaky() -> object:
    return (x for x in range(3))  # a generator cannot be pickled


@insitu.step
def quiet() -> int:
    return 1


@insitu.step
def scan(i: int) -> int:
    insitu.log_metric("score", float(i))
    print(f"scanning {i}")
    return i


@insitu.pipeline
def two_failures() -> None:
    bad_lookup()
    leaky()


@insitu.pipeline
def map_fails(n: int = 3) -> None:
    evaluate.map(items(n))


@insitu.pipeline
def scanned(n: int = 12) -> None:
    scan.map(items(n))
    quiet()
