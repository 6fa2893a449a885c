"""A step option spelt wrong at decoration time (for the CLI's load error)."""

import insitu


@insitu.step(mem="1GiB")
def a(x: int) -> int:
    return x


@insitu.pipeline
def p() -> None:
    a(1)
