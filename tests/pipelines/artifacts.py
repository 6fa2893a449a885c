from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

import insitu


@insitu.step
def make_array() -> np.ndarray:
    return np.arange(12, dtype=np.float32).reshape(3, 4)


@insitu.step
def make_frame(arr: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(arr, columns=["a", "b", "c", "d"])


@insitu.step
def write_file(df: pd.DataFrame) -> Path:
    import tempfile

    p = Path(tempfile.mkdtemp()) / "frame.csv"
    df.to_csv(p, index=False)
    return p


@insitu.step
def write_dir(df: pd.DataFrame) -> Path:
    import tempfile

    d = Path(tempfile.mkdtemp()) / "parts"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_text("alpha")
    (d / "sub" / "b.txt").write_text(str(len(df)))
    return d


class Point:
    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y


@insitu.step
def make_object() -> Point:
    return Point(3, 4)


@insitu.step
def check(arr: np.ndarray, df: pd.DataFrame, f: Path, d: Path, obj: Point) -> dict:  # type: ignore[type-arg]
    return {"arr_sum": float(arr.sum()), "df_cols": list(df.columns),
            "df_dtype": str(df["a"].dtype),
            "file_head": f.read_text().splitlines()[0], "file_name": f.name,
            "dir_files": sorted(str(p.relative_to(d)) for p in d.rglob("*.txt")),
            "obj": obj.x + obj.y}


@insitu.pipeline
def all_kinds() -> None:
    arr = make_array()
    df = make_frame(arr)
    check(arr, df, write_file(df), write_dir(df), make_object())
