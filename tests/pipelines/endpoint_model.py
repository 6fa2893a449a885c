"""A tiny scikit-learn model for the server's endpoint tests: 4 features, 2 classes."""

from __future__ import annotations

from typing import Any

import insitu


@insitu.step
def fit() -> Any:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    x = np.arange(40, dtype=np.float64).reshape(10, 4)
    return LogisticRegression().fit(x, (x[:, 0] > 18).astype(int))


@insitu.pipeline
def train() -> None:
    fit()
