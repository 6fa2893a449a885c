"""Objectives for benchmarks/tuning.py (steps must live in an importable module)."""

from __future__ import annotations

import math

import numpy as np

import insitu

_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
               [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                      [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


@insitu.step(cpu=0.5, memory="1GiB")
def branin(x1: float, x2: float) -> float:
    """Global minimum 0.397887."""
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


@insitu.step(cpu=0.5, memory="1GiB")
def hartmann6(x1: float, x2: float, x3: float, x4: float, x5: float, x6: float) -> float:
    """Global minimum -3.32237."""
    x = np.array([x1, x2, x3, x4, x5, x6])
    return float(-np.sum(_ALPHA * np.exp(-np.sum(_A * (x - _P) ** 2, axis=1))))


@insitu.step(cpu=1, memory="1GiB")
def svm_cv(C: float, gamma: float) -> float:
    """5-fold cross-validated accuracy of an RBF SVM on the breast-cancer data (maximise)."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    x, y = load_breast_cancer(return_X_y=True)
    model = make_pipeline(StandardScaler(), SVC(C=C, gamma=gamma))
    return float(cross_val_score(model, x, y, cv=5).mean())


@insitu.step(cpu=0.5)
def trivial(x: float) -> float:
    return x * x


PROBLEMS = {
    "branin": (branin, {"x1": insitu.tune.uniform(-5, 10), "x2": insitu.tune.uniform(0, 15)},
               "minimize"),
    "hartmann6": (hartmann6, {f"x{i}": insitu.tune.uniform(0, 1) for i in range(1, 7)},
                  "minimize"),
    "svm_breast_cancer": (svm_cv, {"C": insitu.tune.loguniform(1e-2, 1e3),
                                   "gamma": insitu.tune.loguniform(1e-5, 1e0)}, "maximize"),
}
