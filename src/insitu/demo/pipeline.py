"""Classify breast-cancer biopsies (a dataset bundled with scikit-learn, no download).

load -> split -> prepare features -> train several model variants in parallel
-> evaluate each -> pick the best -> test it -> save the model as an artifact.

Run it:  insitu run examples/classification.py   (or: insitu demo)
"""

from __future__ import annotations

import pickle
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import SVC

import insitu

# Heavy imports at module level are paid once: workers fork from a process that has them.

VARIANTS = [
    {"name": "logistic_regression", "kind": "logreg", "C": 1.0},
    {"name": "logistic_regression_strong_l2", "kind": "logreg", "C": 0.05},
    {"name": "random_forest", "kind": "forest", "n_estimators": 200, "max_depth": 6},
    {"name": "gradient_boosting", "kind": "boosting", "n_estimators": 150, "learning_rate": 0.1},
    {"name": "svm_rbf", "kind": "svm", "C": 2.0},
    {"name": "knn", "kind": "knn", "n_neighbors": 7},
]


@insitu.step(memory="1GiB")
def load_data() -> pd.DataFrame:
    frame = load_breast_cancer(as_frame=True).frame
    print(f"loaded {len(frame)} rows, {frame.shape[1] - 1} features")
    return frame


@insitu.step(memory="1GiB")
def split(data: pd.DataFrame, test_size: float, seed: int) -> pd.DataFrame:
    """Add a 'split' column: train / val / test, stratified on the target."""
    idx = data.index.to_numpy()
    rest, test = train_test_split(idx, test_size=test_size, random_state=seed,
                                  stratify=data["target"])
    train, val = train_test_split(rest, test_size=0.25, random_state=seed,
                                  stratify=data.loc[rest, "target"])
    out = data.copy()
    out["split"] = "train"
    out.loc[val, "split"] = "val"
    out.loc[test, "split"] = "test"
    print(out["split"].value_counts().to_dict())
    return out


@insitu.step(memory="1GiB")
def prepare_features(data: pd.DataFrame) -> pd.DataFrame:
    """Standardise every feature with statistics of the training rows only."""
    features = [c for c in data.columns if c not in ("target", "split")]
    train = data[data["split"] == "train"]
    mean, std = train[features].mean(), train[features].std().replace(0, 1)
    out = data.copy()
    out[features] = (data[features] - mean) / std
    return out


def _model(variant: dict[str, Any]) -> Any:
    kind = variant["kind"]
    if kind == "logreg":
        return LogisticRegression(C=variant["C"], max_iter=2000)
    if kind == "forest":
        return RandomForestClassifier(n_estimators=variant["n_estimators"],
                                      max_depth=variant["max_depth"], random_state=0, n_jobs=1)
    if kind == "boosting":
        return GradientBoostingClassifier(n_estimators=variant["n_estimators"],
                                          learning_rate=variant["learning_rate"], random_state=0)
    if kind == "svm":
        return SVC(C=variant["C"])
    if kind == "knn":
        return KNeighborsClassifier(n_neighbors=variant["n_neighbors"])
    raise ValueError(f"unknown model kind {kind!r}")


def _xy(data: pd.DataFrame, part: str) -> tuple[pd.DataFrame, pd.Series]:
    rows = data[data["split"] == part]
    return rows.drop(columns=["target", "split"]), rows["target"]


@insitu.step(cpu=1, memory="1GiB", retries=1)
def train(variant: dict[str, Any], data: pd.DataFrame) -> dict[str, Any]:
    x, y = _xy(data, "train")
    model = _model(variant).fit(x, y)
    print(f"trained {variant['name']} on {len(x)} rows")
    return {"name": variant["name"], "model": model}


@insitu.step(memory="1GiB")
def evaluate(trained: dict[str, Any], data: pd.DataFrame) -> dict[str, Any]:
    x, y = _xy(data, "val")
    acc = float((trained["model"].predict(x) == y).mean())
    print(f"{trained['name']}: validation accuracy {acc:.4f}")
    return {"name": trained["name"], "val_accuracy": acc}


@insitu.step
def pick_best(scores: list[dict[str, Any]]) -> str:
    best = max(scores, key=lambda s: (s["val_accuracy"], s["name"]))
    return str(best["name"])


@insitu.step(memory="1GiB")
def save_model(models: list[dict[str, Any]], best: str) -> Path:
    model = next(m["model"] for m in models if m["name"] == best)
    out = Path(tempfile.mkdtemp()) / f"{best}.pkl"
    out.write_bytes(pickle.dumps(model))
    return out


@insitu.step(memory="1GiB")
def report(model_file: Path, best: str, scores: list[dict[str, Any]],
           data: pd.DataFrame) -> dict[str, Any]:
    model = pickle.loads(model_file.read_bytes())
    x, y = _xy(data, "test")
    test_acc = float((model.predict(x) == y).mean())
    return {"best": best, "test_accuracy": test_acc,
            "scores": {s["name"]: s["val_accuracy"] for s in scores}}


@insitu.pipeline
def classification(test_size: float = 0.2, seed: int = 7,
                   variants: list = VARIANTS) -> None:
    """Train model variants in parallel on a bundled dataset and keep the best."""
    raw = load_data()
    data = prepare_features(split(raw, test_size, seed))
    models = train.map(variants, data=data)
    scores = evaluate.map(models, data=data)
    best = pick_best(scores)
    model_file = save_model(models, best)
    report(model_file, best, scores, data)
