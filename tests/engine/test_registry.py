"""The model registry: versions, aliases, lineage, load, and what it refuses."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import insitu
from insitu.errors import Conflict, NotFound

sys.path.insert(0, str(Path(__file__).parents[1] / "pipelines"))
import tracked  # noqa: E402


def test_register_alias_load_and_lineage(home: Path) -> None:
    r1 = insitu.run(tracked.tracked, lr=0.1)
    r2 = insitu.run(tracked.tracked, lr=0.3)
    v1 = insitu.models.register("fitter", run=r1.id, step="fit", alias="champion",
                                description="first")
    v2 = insitu.models.register("fitter", run=r2.id, step="fit", tags={"team": "ml"})
    assert (v1.version, v2.version) == (1, 2)
    assert insitu.models.load("fitter@champion") == pytest.approx(0.9 ** 5)
    assert insitu.models.load("fitter") == pytest.approx(0.7 ** 5)
    assert insitu.models.load("fitter:1") == pytest.approx(0.9 ** 5)
    insitu.models.set_alias("fitter", "champion", 2)
    insitu.models.set_alias("fitter", "challenger", 1)
    assert insitu.models.get_version("fitter@champion").version == 2
    lin = insitu.models.get_version("fitter:2").lineage
    assert lin["run_id"] == r2.id and lin["step"] == "fit" and lin["params"]["lr"] == 0.3
    assert lin["step_params"]["optimizer"] == "sgd"
    assert len(lin["code_fingerprint"]) == 32 and lin["function"] == "fit"


def test_registry_refusals_are_clear(home: Path) -> None:
    r = insitu.run(tracked.tracked)
    insitu.models.register("m", run=r.id, step="fit", alias="champion")
    with pytest.raises(Conflict, match="produced registered model version"):
        insitu.list_runs()[0]._store.delete_run(r.id)
    with pytest.raises(NotFound, match="no alias 'prod'"):
        insitu.models.load("m@prod")
    with pytest.raises(NotFound, match="no model named 'mm'") as e:
        insitu.models.load("mm")
    assert "did you mean 'm'" in str(e.value)
    with pytest.raises(NotFound, match="no step 'fitt'"):
        insitu.models.register("m", run=r.id, step="fitt")
    with pytest.raises(Conflict, match="aliased as champion"):
        insitu.models.delete_version("m", 1)
    with pytest.raises(insitu.errors.UserError, match="invalid model name"):
        insitu.models.register("bad name!", run=r.id, step="fit")


def test_alias_pointing_at_a_missing_version(home: Path) -> None:
    import time

    from insitu.store import AliasRecord, open_store

    r = insitu.run(tracked.tracked)
    insitu.models.register("m", run=r.id, step="fit")
    open_store().put(AliasRecord(name="m", alias="old", version=7, updated_at=time.time()))
    with pytest.raises(NotFound, match="points at version 7, which no longer exists"):
        insitu.models.load("m@old")


def test_models_cli(cli, home: Path) -> None:  # type: ignore[no-untyped-def]
    target = f"{Path(tracked.__file__)}:tracked"
    assert cli("run", target).returncode == 0
    rid = json.loads(cli("runs", "--json").stdout)[0]["id"]
    r = cli("models", "register", "fraud", "--run", rid, "--step", "fit", "--alias", "champion",
            "--tag", "team=risk")
    assert r.returncode == 0, r.stderr
    assert "registered fraud:1" in r.stdout
    ls = cli("models", "ls")
    assert "fraud" in ls.stdout and "@champion=1" in ls.stdout
    show = cli("models", "show", "fraud").stdout
    for word in ("version 1", "@champion", f"from run {rid}", "fingerprint", "lr=0.1",
                 "optimizer='sgd'", "team=risk"):
        assert word in show, word
    d = cli("delete", rid, "--yes")
    assert d.returncode == 2 and "produced registered model version(s) fraud v1" in d.stderr
    bad = cli("models", "show", "nope")
    assert bad.returncode == 2 and "no model named 'nope'" in bad.stderr
