"""Pipelines whose runs the dashboard's browser tests look at: one that trains (a map,
metrics and params), one whose step fails with a known cause, and one whose step prints and
then waits for a file the test creates, one whose step fails once and is retried, one
that reads a dataset's shards, and one that makes a tiny model a server can serve."""

from __future__ import annotations

import time
from pathlib import Path

import insitu


@insitu.step
def shards(n: int) -> list[int]:
    return list(range(n))


@insitu.step
def score(i: int) -> int:
    return i * i


@insitu.step
def fit(scores: list[int], lr: float) -> float:
    insitu.log_params(lr=lr, optimizer="sgd")
    loss = 1.0
    for _ in range(5):
        loss *= 1 - lr
        insitu.log_metric("loss", loss)
    return loss


@insitu.pipeline
def train(n: int = 4, lr: float = 0.25) -> None:
    fit(score.map(shards(n)), lr)


@insitu.step
def load_config(path: str) -> dict:  # type: ignore[type-arg]
    return {"path": path, "size": Path(path).stat().st_size}


@insitu.pipeline
def broken(path: str = "/nonexistent/config.yaml") -> None:
    load_config(path)


@insitu.step
def talk(gate: str) -> str:
    print("first line, before the gate", flush=True)
    deadline = time.monotonic() + 600
    while not Path(gate).exists():  # the test creates the file once it saw the line
        if time.monotonic() > deadline:
            raise TimeoutError(f"{gate} never appeared")
        time.sleep(0.05)
    print("second line, after the gate", flush=True)
    return "done"


@insitu.pipeline
def gated(gate: str = "") -> None:
    talk(gate)


@insitu.step(cpu=0.5)
def bowl(x: float, y: float) -> dict:  # type: ignore[type-arg]
    return {"loss": (x - 1.0) ** 2 + 0.1 * y}


@insitu.pipeline
def search() -> None:
    insitu.tune(bowl, space={"x": insitu.tune.uniform(-3, 3), "y": insitu.tune.uniform(0, 1)},
                metric="loss", goal="minimize", algorithm="random", max_trials=4, parallel=2,
                seed=3)


@insitu.step(retries=1, backoff=0.05)
def wobble(marker: str) -> str:
    if not Path(marker).exists():  # the first attempt fails, the retry succeeds
        Path(marker).write_text("tried")
        raise RuntimeError("the first attempt fails on purpose")
    return "steady"


@insitu.pipeline
def flaky(marker: str = "") -> None:
    wobble(marker)


@insitu.step
def count_lines(shard: dict) -> int:  # type: ignore[type-arg]
    return len(insitu.shard_path(shard).read_bytes().splitlines())


@insitu.step
def add_up(counts: list[int]) -> int:
    return sum(counts)


@insitu.pipeline
def reads(name: str = "") -> None:
    add_up(count_lines.map(insitu.dataset(name).shards()))


@insitu.step
def stamp_it() -> str:
    return "stamped"


@insitu.pipeline
def stamp() -> None:
    stamp_it()


@insitu.step
def tiny_model() -> object:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression().fit([[0.0], [1.0]], [0, 1])


@insitu.pipeline
def servable() -> None:
    tiny_model()
