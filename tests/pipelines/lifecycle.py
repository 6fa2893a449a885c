"""Pipelines for the engine's state machine: a worker that dies, a step that always fails."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import insitu


@insitu.step(retries=0)
def dies_once() -> str:
    path = Path(os.environ["INSITU_TEST_COUNTER"])
    n = int(path.read_text()) if path.exists() else 0
    path.write_text(str(n + 1))
    if n == 0:  # the worker vanishes, as when its node goes away
        os.kill(os.getpid(), signal.SIGKILL)
    return f"ran {n + 1} times"


@insitu.pipeline
def lost_once() -> None:
    dies_once()


@insitu.step(retries=1, backoff=0.01)
def always_fails() -> None:
    raise RuntimeError("always")


@insitu.pipeline
def failing() -> None:
    always_fails()


@insitu.step(retries=2, backoff=600)
def fails_once_then_waits() -> str:
    path = Path(os.environ["INSITU_TEST_COUNTER"])
    n = int(path.read_text()) if path.exists() else 0
    path.write_text(str(n + 1))
    if n == 0:
        raise ConnectionError("transient")
    return f"ok after {n + 1}"


@insitu.pipeline
def long_backoff() -> None:
    fails_once_then_waits()
