"""Step functions the executor conformance suite runs (importable on every node)."""

from __future__ import annotations

import os
import sys
import time
from typing import Any


def add(x: int, y: int) -> int:
    print(f"adding {x} and {y}")
    print("to stderr", file=sys.stderr)
    return x + y


def fail(message: str) -> None:
    raise ValueError(message)


def allocate(mib_per_step: int, steps: int) -> int:
    held = []
    for _ in range(steps):
        block = bytearray(mib_per_step * 1024 * 1024)
        for i in range(0, len(block), 4096):  # touch every page: real resident memory
            block[i] = 1
        held.append(block)
    return len(held)


def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def environment(names: list[str]) -> dict[str, str | None]:
    return {n: os.environ.get(n) for n in names}


def die(code: int) -> None:
    sys.stdout.flush()
    os._exit(code)


def unpicklable() -> object:
    import threading

    return threading.Lock()


def meet(folder: str, me: str, other: str, timeout: float = 120.0) -> list[Any]:
    """Say "I am running" (a file), then wait for ``other`` to say so too: both see each other
    only if they run at the same time. Returns [pid, whether the other was seen]."""
    os.makedirs(folder, exist_ok=True)
    open(os.path.join(folder, me), "w").close()
    deadline = time.monotonic() + timeout
    while not os.path.exists(os.path.join(folder, other)):
        if time.monotonic() > deadline:
            return [os.getpid(), False]
        time.sleep(0.01)
    return [os.getpid(), True]


def pid_and_time() -> list[float]:
    t0 = time.time()
    time.sleep(0.5)
    return [os.getpid(), t0, time.time()]
