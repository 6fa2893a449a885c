"""Step functions the executor conformance suite runs (importable on every node)."""

from __future__ import annotations

import os
import sys
import time


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


def pid_and_time() -> list[float]:
    t0 = time.time()
    time.sleep(0.5)
    return [os.getpid(), t0, time.time()]
