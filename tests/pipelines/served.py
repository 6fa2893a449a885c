"""Pipelines whose runs the server's read routes show: outputs of every kind, logged metrics
and params, a study, and a step that talks for a while."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import insitu

# the smallest valid PNG: one transparent pixel
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082")


@insitu.step
def table(n: int) -> pd.DataFrame:
    print(f"making a table of {n} rows")
    print("héllo on stderr", file=sys.stderr)
    return pd.DataFrame({"i": range(n), "square": [i * i for i in range(n)],
                         "name": [f"row {i}" for i in range(n)]})


@insitu.step
def notes(df: pd.DataFrame) -> Path:
    p = Path(tempfile.mkdtemp()) / "notes.txt"
    p.write_text("".join(f"row {i}: {s}\n" for i, s in zip(df["i"], df["square"], strict=True)))
    return p


@insitu.step
def picture() -> Path:
    p = Path(tempfile.mkdtemp()) / "pixel.png"
    p.write_bytes(PNG)
    return p


@insitu.step
def numbers(df: pd.DataFrame) -> np.ndarray:
    return df["square"].to_numpy(dtype=np.float64).reshape(-1, 1)


@insitu.step
def fit(df: pd.DataFrame, lr: float) -> dict:  # type: ignore[type-arg]
    insitu.log_params(lr=lr, optimizer="sgd")
    loss = 1.0
    for _ in range(4):
        loss *= 1 - lr
        insitu.log_metric("loss", loss)
    return {"loss": loss, "rows": len(df)}


@insitu.pipeline
def outputs(n: int = 30, lr: float = 0.25) -> None:
    df = table(n)
    notes(df)
    picture()
    numbers(df)
    fit(df, lr)


@insitu.step(cpu=0.5)
def bowl(x: float) -> dict:  # type: ignore[type-arg]
    return {"loss": (x - 1.0) ** 2}


@insitu.pipeline
def study() -> None:
    insitu.tune(bowl, space={"x": insitu.tune.uniform(-3, 3)}, metric="loss",
                goal="minimize", algorithm="random", max_trials=3, parallel=1, seed=3)


@insitu.step
def talk(lines: int, pause: float) -> int:
    for i in range(lines):
        print(f"line {i}", flush=True)
        if i % 3 == 0:
            print(f"warning {i}", file=sys.stderr, flush=True)
        time.sleep(pause)
    return lines


@insitu.step
def after(n: int) -> int:
    print(f"after {n}")
    return n + 1


@insitu.pipeline
def chatty(lines: int = 8, pause: float = 0.5) -> None:
    after(talk(lines, pause))
