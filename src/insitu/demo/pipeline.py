"""Classify breast-cancer biopsies (a dataset bundled with scikit-learn, no download).

load -> split -> prepare features -> train several model variants in parallel
-> evaluate each -> pick the best -> tune it (trials are steps) -> save the tuned model
as an artifact -> test it. `insitu demo` then registers it as demo-classifier@champion.

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


def _scaled(variant: dict[str, Any], scale: float) -> dict[str, Any]:
    """The variant with its main hyperparameter multiplied by ``scale``."""
    v = dict(variant)
    kind = v["kind"]
    if kind in ("logreg", "svm"):
        v["C"] = v["C"] * scale
    elif kind == "forest":
        v["max_depth"] = max(1, round(v["max_depth"] * scale))
    elif kind == "boosting":
        v["learning_rate"] = min(1.0, v["learning_rate"] * scale)
    elif kind == "knn":
        v["n_neighbors"] = max(1, round(v["n_neighbors"] * scale))
    return v


@insitu.step(cpu=1, memory="1GiB")
def tune_best(scale: float, best: str, data: pd.DataFrame,
              variants: list[dict[str, Any]]) -> dict[str, Any]:
    """One tuning trial: the best variant with its main hyperparameter scaled."""
    variant = _scaled(next(v for v in variants if v["name"] == best), scale)
    x, y = _xy(data, "train")
    model = _model(variant).fit(x, y)
    vx, vy = _xy(data, "val")
    acc = float((model.predict(vx) == vy).mean())
    insitu.log_metric("val_accuracy", acc)
    return {"val_accuracy": acc, "model": model, "variant": variant}


@insitu.step
def final_model(tuned: dict[str, Any]) -> Any:
    """The model of the best tuning trial (registered by `insitu demo`)."""
    return tuned["best_output"]["model"]


@insitu.step(memory="1GiB")
def save_model(model: Any, best: str) -> Path:
    out = Path(tempfile.mkdtemp()) / f"{best}.pkl"
    out.write_bytes(pickle.dumps(model))
    return out


@insitu.step(memory="1GiB")
def report(model_file: Path, best: str, scores: list[dict[str, Any]],
           tuned: dict[str, Any], data: pd.DataFrame) -> dict[str, Any]:
    model = pickle.loads(model_file.read_bytes())
    x, y = _xy(data, "test")
    test_acc = float((model.predict(x) == y).mean())
    return {"best": best, "test_accuracy": test_acc,
            "scores": {s["name"]: s["val_accuracy"] for s in scores},
            "tuned_accuracy": tuned["best_value"], "tuned_params": tuned["best_params"],
            "tuned_variant": tuned["best_output"]["variant"], "trials": tuned["n_trials"]}


@insitu.pipeline
def classification(test_size: float = 0.2, seed: int = 7,
                   variants: list = VARIANTS) -> None:
    """Train model variants in parallel, tune the best one, and keep the tuned model."""
    raw = load_data()
    data = prepare_features(split(raw, test_size, seed))
    models = train.map(variants, data=data)
    scores = evaluate.map(models, data=data)
    best = pick_best(scores)
    tuned = insitu.tune(tune_best, space={"scale": insitu.tune.loguniform(0.1, 10.0)},
                        metric="val_accuracy", goal="maximize", max_trials=8, parallel=2,
                        seed=7, best=best, data=data, variants=variants)
    model = final_model(tuned)
    report(save_model(model, best), best, scores, tuned, data)
