"""Authoring and compilation: the spec a pipeline compiles to, and validation."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import insitu
from insitu.errors import StepOutsidePipeline, ValidationError
from insitu.spec import load_spec, schema, validate_spec

sys.path.insert(0, str(Path(__file__).parents[1] / "pipelines"))
import basic  # noqa: E402


def test_spec_of_fanout_is_plain_valid_json() -> None:
    spec = basic.fanout.compile()
    assert json.loads(json.dumps(spec)) == spec
    validate_spec(spec)
    steps = {s["id"]: s for s in spec["steps"]}
    assert list(steps) == ["make_list", "square", "total", "label", "shout", "shout-2",
                           "whisper"]
    assert steps["square"]["map"] == {"arg": "x", "over": {"output": "make_list"},
                                      "max_parallel": 2}
    assert steps["total"]["args"] == {"xs": {"output": "square"}}
    assert steps["square"]["resources"]["cpu"] == 0.5
    assert steps["make_list"]["resources"]["memory"] == 2 * 1024**3
    assert spec["parameters"] == [
        {"name": "n", "type": "int", "required": False, "default": 5},
        {"name": "mode", "type": "str", "required": False, "default": "auto"}]
    assert steps["shout"]["when"] == {"op": "==", "left": {"output": "label"},
                                      "right": {"const": "big"}}
    elif_when = steps["shout-2"]["when"]
    assert elif_when["op"] == "and" and elif_when["args"][0]["op"] == "not"
    # the body saw mode="auto", so `mode == "loud"` was decided while compiling
    assert steps["whisper"]["when"]["args"] == [
        {"op": "not", "args": [steps["shout"]["when"]]},
        {"op": "not", "args": [{"op": "truthy", "left": {"const": False}}]}]
    assert spec["values"] == {"n": 5, "mode": "auto"}


def test_options_override_per_call_and_resources_from_parameters() -> None:
    spec = basic.too_big.compile(mem="3GiB")
    (step,) = spec["steps"]
    assert step["resources"]["memory"] == 3 * 1024**3
    spec = basic.gpus.compile()
    whole = spec["steps"][0]
    assert whole["id"] == "whole" and whole["resources"]["gpu"] == 1.0
    assert whole["resources"]["gpu_type"] == "A100" and whole["env"] == {"GREETING": "hi"}
    assert spec["steps"][1]["resources"]["gpu"] == 0.5


def test_retry_policy_and_timeout_compile() -> None:
    (s,) = basic.retrying.compile()["steps"]
    assert s["retries"] == {"max": 2, "backoff": 0.05, "backoff_factor": 2.0,
                            "max_backoff": 60.0, "retry_on": ["builtins.ConnectionError"]}
    (t,) = basic.timing_out.compile()["steps"]
    assert t["timeout"] == 1.0


def test_exit_handler_gets_status_ref() -> None:
    spec = basic.failing_with_exit.compile()
    notify = spec["steps"][-1]
    assert notify["exit_handler"] is True and notify["args"] == {"status": {"status": True}}


def test_fingerprint_changes_with_code_only() -> None:
    @insitu.step
    def f(x: int) -> int:
        return x

    @insitu.step
    def g(x: int) -> int:
        return x + 1

    from insitu.sdk._step import fingerprint

    assert fingerprint(f.fn) != fingerprint(g.fn)
    assert fingerprint(f.fn) == fingerprint(f.options(memory="1GiB").fn)


def test_all_problems_reported_at_once_with_lines() -> None:
    @insitu.step(memory="nope", retries=-1, retry_on=["x"])
    def bad_step(x: int) -> int:
        return x

    @insitu.pipeline
    def p(n: int) -> None:
        bad_step(n, 3)
        bad_step(object())

    with pytest.raises(ValidationError) as e:
        p.compile()
    msgs = [pr.message for pr in e.value.problems]
    assert any("invalid memory 'nope'" in m for m in msgs)
    assert any("retries must be a whole number" in m for m in msgs)
    assert any("retry_on must list exception classes" in m for m in msgs)
    assert any("too many positional arguments" in m for m in msgs)
    assert any("cannot be written into the pipeline spec" in m for m in msgs)
    assert all(pr.file == __file__ and pr.line for pr in e.value.problems)
    assert any("defined inside another function" in m for m in msgs)


def test_python_if_on_a_handle_is_a_clear_problem() -> None:
    @insitu.pipeline
    def p() -> None:
        if basic.total([1]):
            pass

    with pytest.raises(ValidationError) as e:
        p.compile()
    (pr,) = e.value.problems
    assert "cannot be used in a Python `if`" in pr.message and "insitu.If" in (pr.hint or "")
    assert pr.line is not None


def test_else_without_if_is_a_problem() -> None:
    @insitu.pipeline
    def p() -> None:
        with insitu.Else():
            basic.total([1])

    with pytest.raises(ValidationError, match="must follow an insitu.If"):
        p.compile()


def test_step_outside_pipeline_names_the_line() -> None:
    with pytest.raises(StepOutsidePipeline) as e:
        basic.total([1, 2])
    assert f"{__file__}:" in e.value.message and ".fn(...)" in (e.value.hint or "")
    assert basic.total.fn([1, 2]) == 3


def test_map_needs_a_list() -> None:
    @insitu.pipeline
    def p() -> None:
        basic.square.map(5)

    with pytest.raises(ValidationError, match="needs a list"):
        p.compile()


def test_unsupported_parameter_type() -> None:
    @insitu.pipeline
    def p(x: complex = 1j) -> None:  # type: ignore[assignment]
        basic.total([1])

    with pytest.raises(ValidationError) as e:
        p.compile()
    assert any("parameter 'x'" in pr.message for pr in e.value.problems)


def test_schema_ships_in_the_package_and_rejects_bad_specs(tmp_path: Path) -> None:
    assert schema()["title"] == "insitu PipelineSpec v1"
    p = tmp_path / "s.json"
    p.write_text(json.dumps({"spec_version": 1, "name": "x", "parameters": [], "steps": [
        {"id": "1bad"}], "source": {"qualname": "x"}}))
    with pytest.raises(insitu.errors.UserError) as e:
        load_spec(p)
    assert "not a valid insitu PipelineSpec" in e.value.message
    p.write_text("{not json")
    with pytest.raises(insitu.errors.UserError, match="not JSON"):
        load_spec(p)


def test_calling_a_pipeline_directly_explains_how_to_run_it() -> None:
    with pytest.raises(insitu.errors.UserError, match="insitu.run"):
        basic.fanout()
