"""Authoring mistakes (issue 10, defect 13): a "did you mean", at the user's own line."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import insitu
from insitu.errors import UserError, ValidationError

PIPELINES = Path(__file__).parents[1] / "pipelines"


@insitu.step
def scale(x: int, scale: int = 2) -> int:
    return x * scale


def _line_of(text: str, fn: object) -> int:
    src, start = inspect.getsourcelines(fn)  # type: ignore[arg-type]
    return start + next(i for i, s in enumerate(src) if text in s)


def test_misspelt_option_at_decoration() -> None:
    with pytest.raises(UserError) as e:
        @insitu.step(mem="1GiB")
        def a(x: int) -> int:
            return x
    msg = e.value.message
    assert "unknown step option mem= (did you mean memory=?)" in msg
    line = _line_of("@insitu.step(mem=", test_misspelt_option_at_decoration)
    assert msg.startswith(f"{__file__}:{line}:")
    assert "_step.py" not in str(e.value)


def test_misspelt_option_and_argument_in_a_pipeline_are_all_reported() -> None:
    @insitu.pipeline
    def p() -> None:
        scale(1, scal=3)
        scale.options(retry=2)(1)

    with pytest.raises(ValidationError) as e:
        p.compile()
    by_msg = {pr.message: pr for pr in e.value.problems}
    (arg,) = [pr for m, pr in by_msg.items() if "unexpected keyword argument 'scal'" in m]
    assert "did you mean scale=?" in (arg.hint or "")
    assert (arg.file, arg.line) == (__file__, _line_of("scal=3", p.fn))
    (opt,) = [pr for m, pr in by_msg.items() if "retry=" in m]
    assert "did you mean retries=?" in opt.message
    assert (opt.file, opt.line) == (__file__, _line_of("retry=2", p.fn))
    assert all("_step.py" not in str(pr) for pr in e.value.problems)


def test_cli_load_error_names_the_users_line(cli) -> None:  # type: ignore[no-untyped-def]
    r = cli("compile", str(PIPELINES / "misspelt.py"))
    assert r.returncode == 2
    text = " ".join(r.stderr.split())
    assert f"{PIPELINES / 'misspelt.py'}:6: unknown step option mem= (did you mean memory=?)" \
        in text
    assert "_step.py" not in text and "Traceback" not in text
