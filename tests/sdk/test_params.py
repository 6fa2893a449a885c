"""Pipeline parameters as plain Python values (issue 10, defect 7).

The body sees the run's values; the spec records them; a compiled spec runs only with
the values it was compiled with. No use of a parameter ends in an internal error.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import insitu
from insitu.errors import ParameterError, UserError, ValidationError
from insitu.spec import validate_spec

PIPELINES = Path(__file__).parents[1] / "pipelines"
sys.path.insert(0, str(PIPELINES))
import plain_params  # noqa: E402

FILE = str(PIPELINES / "plain_params.py")


def test_body_sees_values_and_spec_records_them() -> None:
    spec = plain_params.squares.compile(n=4)
    validate_spec(spec)
    assert spec["values"] == {"n": 4, "mode": "fast", "tries": 0}
    (sq,) = [s for s in spec["steps"] if s["id"] == "square"]
    assert sq["map"]["over"] == {"const": [0, 1, 2, 3]}
    assert [s["id"] for s in spec["steps"]] == ["square", "total"]
    slow = plain_params.squares.compile(n=2, mode="slow", tries=2)
    assert [s["id"] for s in slow["steps"]] == ["square", "tag"]
    assert slow["steps"][1]["args"] == {"s": {"const": "slow-2"}}
    assert slow["steps"][0]["retries"]["max"] == 2


def test_run_with_range_of_a_parameter(home: Path) -> None:
    run = insitu.run(plain_params.squares, n=5)
    assert run.output("total") == 30
    assert run.params == {"n": 5, "mode": "fast", "tries": 0}
    assert insitu.run(plain_params.squares, n=2, mode="slow").output("tag") == "slow-2"


def test_tune_seed_from_a_parameter_runs(home: Path) -> None:
    run = insitu.run(plain_params.tuned, seed=7)
    assert run.state == "succeeded"
    (t,) = [s for s in run.record.spec["steps"] if s["id"] == "quad"]
    assert t["tune"]["seed"] == 7 and t["tune"]["max_trials"] == 3


def test_tune_option_from_a_step_output_is_a_problem_not_a_crash() -> None:
    with pytest.raises(ValidationError) as e:
        plain_params.tuned_by_output.compile()
    (pr,) = e.value.problems
    assert "insitu.tune's seed must be known when the pipeline is compiled" in pr.message
    assert pr.file == FILE and pr.line is not None


def test_cli_run_and_compile_with_values(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = cli("run", f"{FILE}:squares", "-p", "n=4", "--plain")
    assert r.returncode == 0, r.stdout + r.stderr
    r = cli("run", f"{FILE}:tuned", "-p", "seed=3", "--plain")
    assert r.returncode == 0, r.stdout + r.stderr
    out = tmp_path / "spec.json"
    r = cli("compile", f"{FILE}:squares", "-p", "n=2", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["values"] == {"n": 2, "mode": "fast", "tries": 0}
    assert cli("run", str(out), "--plain").returncode == 0
    assert cli("run", str(out), "-p", "n=2", "--plain").returncode == 0
    r = cli("run", str(out), "-p", "n=3", "--plain")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    text = " ".join((r.stdout + r.stderr).split())
    assert "was compiled with n=2" in text
    assert f"insitu compile {FILE}:squares -p n=3 -o spec.json" in text


def test_a_compiled_spec_runs_only_with_its_values(home: Path) -> None:
    from insitu._config import load_config
    from insitu.engine import Engine
    from insitu.executor import LocalExecutor
    from insitu.store import open_store

    spec = plain_params.squares.compile(n=2)
    cfg = load_config()
    ex = LocalExecutor()
    try:
        engine = Engine(open_store(cfg.db_url), ex, config=cfg)
        with pytest.raises(ParameterError, match="compiled with n=2"):
            engine.submit(spec, {"n": 3})
        rec = engine.execute(engine.submit(spec, {}).id)
    finally:
        ex.close()
    assert rec.state == "succeeded" and rec.params["n"] == 2


def test_map_over_a_non_list_parameter_is_caught_at_compile_time() -> None:
    with pytest.raises(ValidationError) as e:
        plain_params.map_over_int.compile()
    (pr,) = e.value.problems
    assert "square.map needs a list, got 3" in pr.message
    assert "list(range(3))" in (pr.hint or "") and pr.file == FILE
    with pytest.raises(ValidationError, match="parameter 'n' is declared int"):
        plain_params.maps_required_int.compile()


def test_required_parameter_without_a_value() -> None:
    # passed through to a step: a placeholder, resolved when the spec runs
    spec = plain_params.passes_n.compile()
    assert spec["steps"][0]["args"] == {"x": {"param": "n"}} and spec["values"] == {}
    # computed with in the body: one clear problem that says how to give it a value
    with pytest.raises(ValidationError) as e:
        plain_params.needs_n.compile()
    (pr,) = e.value.problems
    assert "parameter 'n' has no value while the pipeline is compiled" in pr.message
    assert "-p n=VALUE" in (pr.hint or "") and pr.file == FILE
    with pytest.raises(ParameterError, match="missing required parameter 'n'"):
        insitu.run(plain_params.needs_n)


def test_parameter_values_are_checked_before_tracing() -> None:
    with pytest.raises(ParameterError, match="unknown parameter 'nn' \\(did you mean 'n'"):
        plain_params.squares.compile(nn=3)
    with pytest.raises(ParameterError, match="expects int"):
        plain_params.squares.compile(n="three")
    from insitu.sdk import compile_pipeline

    with pytest.raises(ParameterError, match="'x' is nan"):
        compile_pipeline(_float_pipeline(), {"x": "nan"}, from_text=True)


def _float_pipeline() -> insitu.sdk.Pipeline:
    @insitu.pipeline
    def p(x: float = 1.0) -> None:
        plain_params.square(int(x))

    return p


def test_handles_still_refuse_python_control_flow() -> None:
    @insitu.pipeline
    def p() -> None:
        for _ in plain_params.total([1]):  # a step output is known only at run time
            pass

    with pytest.raises(ValidationError, match="cannot be iterated"):
        p.compile()
    assert issubclass(ValidationError, UserError)


def test_tune_seed_out_of_range_from_a_parameter_is_a_problem() -> None:
    with pytest.raises(ValidationError) as e:
        plain_params.tuned.compile(seed=-5)
    (pr,) = e.value.problems
    assert "seed must be an int from 0 to 4294967295, got -5" in pr.message
    assert pr.file == FILE


def test_cli_values_given_twice_or_not_finite_are_refused(cli) -> None:  # type: ignore[no-untyped-def]
    r = cli("run", f"{FILE}:squares", "-p", "n=1", "-p", "n=2", "--plain")
    assert r.returncode == 2 and "parameter 'n' is given twice" in r.stderr
    r = cli("compile", f"{FILE}:tuned", "-p", "seed=nan")
    assert r.returncode == 2 and "expects int" in r.stderr and "Traceback" not in r.stderr
