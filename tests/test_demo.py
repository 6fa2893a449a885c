"""`insitu demo` end to end, as a user runs it."""

from __future__ import annotations

from pathlib import Path


def test_demo_trains_compares_and_saves_the_best_model(cli, home: Path) -> None:  # type: ignore[no-untyped-def]
    r = cli("demo", timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    for variant in ("logistic_regression", "random_forest", "gradient_boosting", "svm_rbf",
                    "knn"):
        assert variant in out
    assert "(best)" in out and "test accuracy" in out
    assert "tuned over 8 trials" in out
    assert "registered demo-classifier:1 as @champion" in out
    line = next(x for x in out.splitlines() if x.strip().endswith(".pkl"))
    model = Path(line.split()[-1] if " " in line.strip() else line.strip())
    assert model.exists() and model.stat().st_size > 100
    import pickle

    clf = pickle.loads(model.read_bytes())
    assert hasattr(clf, "predict")


def test_demo_registers_a_loadable_champion(cli, home: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("demo", timeout=300).returncode == 0
    show = cli("models", "show", "demo-classifier")
    assert "@champion" in show.stdout and "step final_model" in show.stdout
    import json

    rid = json.loads(cli("runs", "--json").stdout)[0]["id"]
    tune = cli("tune", "show", rid)
    assert tune.returncode == 0 and "best trial" in tune.stdout and "8 complete" in tune.stdout
