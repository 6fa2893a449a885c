"""Pipelines used by the engine and CLI tests."""

from __future__ import annotations

import os
import time
from pathlib import Path

import insitu

MARKS = os.environ.get("INSITU_TEST_MARKS")


def mark(name: str) -> None:
    """Record that a step body ran (tests count the lines)."""
    if MARKS:
        with open(MARKS, "a") as f:
            f.write(name + "\n")


@insitu.step
def make_list(n: int) -> list[int]:
    mark("make_list")
    return list(range(n))


@insitu.step(cpu=0.5)
def square(x: int) -> int:
    mark(f"square:{x}")
    return x * x


@insitu.step
def total(xs: list[int]) -> int:
    mark("total")
    return sum(xs)


@insitu.step
def label(t: int) -> str:
    mark("label")
    return "big" if t > 10 else "small"


@insitu.step
def shout(s: str) -> str:
    mark(f"shout:{s}")
    return s.upper()


@insitu.step
def whisper(s: str) -> str:
    mark(f"whisper:{s}")
    return s.lower()


@insitu.pipeline
def fanout(n: int = 5, mode: str = "auto") -> None:
    xs = make_list(n)
    squares = square.map(xs, max_parallel=2)
    t = total(squares)
    lab = label(t)
    with insitu.If(lab == "big"):
        shout(lab)
    with insitu.Elif(mode == "loud"):
        shout("forced")
    with insitu.Else():
        whisper(lab)


@insitu.step
def slow(i: int, seconds: float) -> int:
    time.sleep(seconds)
    print(f"slow {i} done", flush=True)
    mark(f"slow:{i}")
    return i


@insitu.step
def collect(xs: list[int]) -> int:
    mark("collect")
    return len(xs)


@insitu.pipeline
def chain_of_sleeps(n: int = 6, seconds: float = 0.4) -> None:
    first = slow(0, seconds)
    items = slow.options(name="many", cpu=0.5).map(make_list(n), seconds=seconds)
    collect([first, items[0]])
    collect(items)


@insitu.step(retries=2, backoff=0.05, retry_on=ConnectionError)
def flaky(fail_times: int) -> str:
    path = Path(os.environ["INSITU_TEST_COUNTER"])
    n = int(path.read_text()) if path.exists() else 0
    path.write_text(str(n + 1))
    if n < fail_times:
        raise ConnectionError(f"transient failure {n + 1}")
    return f"ok after {n + 1}"


@insitu.pipeline
def retrying(fail_times: int = 2) -> None:
    flaky(fail_times)


@insitu.step(retries=3, backoff=0.05, retry_on=ConnectionError)
def wrong_kind() -> None:
    raise KeyError("not retried")


@insitu.pipeline
def not_retried() -> None:
    wrong_kind()


@insitu.step
def broken(x: int) -> int:
    return x // 0


@insitu.step
def notify(status: dict) -> str:  # type: ignore[type-arg]
    mark(f"exit:{status['state']}:{','.join(status['failed_steps'])}")
    return str(status["state"])


@insitu.pipeline
def failing_with_exit(x: int = 1) -> None:
    broken(x)
    insitu.on_exit(notify)


@insitu.pipeline
def passing_with_exit(n: int = 2) -> None:
    total(make_list(n))
    insitu.on_exit(notify)


@insitu.step(timeout=1)
def too_slow() -> None:
    time.sleep(30)


@insitu.pipeline
def timing_out() -> None:
    too_slow()


@insitu.step(memory="300MiB")
def hog() -> int:
    held = []
    while True:
        block = bytearray(32 * 1024 * 1024)
        block[::4096] = b"\x01" * len(block[::4096])
        held.append(block)


@insitu.step
def neighbour(seconds: float) -> str:
    time.sleep(seconds)
    mark("neighbour")
    return "still here"


@insitu.pipeline
def oom(seconds: float = 2.0) -> None:
    hog()
    neighbour(seconds)


@insitu.step
def env_and_gpus() -> dict:  # type: ignore[type-arg]
    return {k: os.environ.get(k) for k in ("GREETING", "CUDA_VISIBLE_DEVICES")}


@insitu.pipeline
def gpus(share: float = 0.5) -> None:
    env_and_gpus.options(env={"GREETING": "hi"}, gpu=1, gpu_type="A100", name="whole")()
    env_and_gpus.options(gpu=share, name="part1")()
    env_and_gpus.options(gpu=share, name="part2")()


@insitu.step
def unserialisable() -> object:
    import threading

    return threading.Lock()


@insitu.pipeline
def bad_output() -> None:
    unserialisable()


@insitu.pipeline
def too_big(mem: str = "900TiB") -> None:
    total.options(memory=mem)([1])


@insitu.step(cache_version="1")
def versioned(x: int) -> int:
    mark("versioned")
    return x + 1


@insitu.pipeline
def cache_demo(x: int = 1) -> None:
    versioned(x)
