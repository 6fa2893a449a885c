"""Small real models of every flavour, made by one pipeline (so each is registered from a
pipeline step, as users do)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import insitu

N_FEATURES = 30


def _data(n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, N_FEATURES))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    return x, y


class Doubler:
    """A model of the user's own: preprocess, predict, postprocess."""

    batchable = True

    def load(self) -> None:
        self.factor = 2.0

    def preprocess(self, x: Any) -> Any:
        return np.asarray(x, dtype=np.float64)

    def predict(self, x: Any) -> Any:
        return x * self.factor

    def postprocess(self, y: Any) -> Any:
        return {"doubled": y}


class Slow:
    """Sleeps in predict, so concurrent requests queue up and are batched."""

    batchable = True

    def predict(self, x: Any) -> Any:
        import time

        time.sleep(0.02)
        return np.asarray(x).sum(axis=1)


class Hog:
    """Allocates as many MiB as its input's first value says (to cross a memory limit)."""

    def predict(self, x: Any) -> Any:
        held = np.ones(int(np.asarray(x).ravel()[0]) * 2**20 // 8)
        return np.asarray([held.sum()])


class Unloadable:
    """Its load fails in every replica."""

    def load(self) -> None:
        raise RuntimeError("the weights file is gone")

    def predict(self, x: Any) -> Any:
        return x


@insitu.step
def sklearn_model(c: float = 1.0) -> Any:
    from sklearn.linear_model import LogisticRegression

    x, y = _data()
    return LogisticRegression(C=c).fit(x, y)


@insitu.step
def xgboost_model() -> Any:
    import xgboost

    x, y = _data()
    return xgboost.XGBClassifier(n_estimators=5, max_depth=2).fit(x, y)


@insitu.step
def lightgbm_model() -> Any:
    import lightgbm

    x, y = _data()
    return lightgbm.LGBMClassifier(n_estimators=5, verbose=-1).fit(x, y)


@insitu.step
def torch_model() -> Any:
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(N_FEATURES, 4), torch.nn.ReLU(),
                               torch.nn.Linear(4, 2))


@insitu.step
def torchscript_model() -> Path:
    import torch

    torch.manual_seed(0)
    m = torch.jit.script(torch.nn.Sequential(torch.nn.Linear(N_FEATURES, 2)))
    out = Path(tempfile.mkdtemp()) / "model.pt"
    torch.jit.save(m, str(out))
    return out


@insitu.step
def onnx_model() -> Path:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    x, y = _data()
    m = LogisticRegression().fit(x.astype(np.float32), y)
    out = Path(tempfile.mkdtemp()) / "model.onnx"
    out.write_bytes(to_onnx(m, x[:1].astype(np.float32), options={"zipmap": False})
                    .SerializeToString())
    return out


@insitu.step
def custom_model() -> Any:
    return Doubler()


@insitu.step
def slow_model() -> Any:
    return Slow()


@insitu.step
def hog_model() -> Any:
    return Hog()


@insitu.step
def unloadable_model() -> Any:
    return Unloadable()


@insitu.step
def not_a_model() -> Any:
    return np.arange(3)


@insitu.pipeline
def zoo() -> None:
    sklearn_model.options(name="sk1")(1.0)
    sklearn_model.options(name="sk2")(0.001)
    xgboost_model()
    lightgbm_model()
    torch_model()
    torchscript_model()
    onnx_model()
    custom_model()
    slow_model()
    hog_model()
    unloadable_model()
    not_a_model()
