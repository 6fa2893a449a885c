"""One INSITU_HOME for the serving tests, holding a model of every flavour, each registered
from a step of one real pipeline run (``zoo.py``), made once per session. The tests' helpers
are in ``served.py`` (a module of its own name: ``conftest`` names another module in each
test folder)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

# name -> step of zoo.zoo; each registered as NAME@champion (sk also has version 2)
MODELS = {"sk": "sk1", "xgb": "xgboost_model", "lgb": "lightgbm_model", "torch": "torch_model",
          "ts": "torchscript_model", "onnx": "onnx_model", "custom": "custom_model",
          "slow": "slow_model", "hog": "hog_model", "unl": "unloadable_model",
          "data": "not_a_model"}


@pytest.fixture(scope="session")
def zoo_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("serving") / "home"
    mp = pytest.MonkeyPatch()
    mp.setenv("INSITU_HOME", str(home))
    mp.delenv("INSITU_DB_URL", raising=False)
    mp.delenv("INSITU_ARTIFACTS", raising=False)
    import zoo

    import insitu

    run = insitu.run(zoo.zoo)
    assert run.state == "succeeded"
    for name, step in MODELS.items():
        insitu.models.register(name, run=run.id, step=step, alias="champion")
    insitu.models.register("sk", run=run.id, step="sk2")  # sk:2, the canary
    yield home
    mp.undo()


@pytest.fixture
def served_home(zoo_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("INSITU_HOME", str(zoo_home))
    return zoo_home
