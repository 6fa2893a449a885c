"""A pipeline that notes each process that imports it (``INSITU_TEST_IMPORTS``)."""

from __future__ import annotations

import os

import insitu

if os.environ.get("INSITU_TEST_IMPORTS"):
    with open(os.environ["INSITU_TEST_IMPORTS"], "a") as f:
        f.write(f"{os.getpid()}\n")


@insitu.step
def double(x: int) -> int:
    return 2 * x


@insitu.pipeline
def counted(x: int = 3) -> None:
    double(double(x))
