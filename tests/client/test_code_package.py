"""The code package a run submitted to a server carries: which files, the same bytes for
the same files, references made relative to its root, and the size limit."""

from __future__ import annotations

import io
import os
import sys
import textwrap
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from insitu.client import build_package
from insitu.errors import UserError
from insitu.sdk import compile_pipeline, load_pipeline

PIPELINE = '''
import insitu
from helpers import double, shout
from lib.feats import label


@insitu.step
def make(n: int) -> list[int]:
    return list(range(n))


@insitu.step
def total(xs: list[int]) -> int:
    from lazy_{tag} import finish  # imported only when the step runs
    return finish(sum(double(x) for x in xs))


@insitu.pipeline
def numbers(n: int = 3):
    shout(label(total(make(n))))
'''


@pytest.fixture
def isolated() -> Iterator[None]:
    """Modules and sys.path entries the pipeline adds are removed afterwards."""
    mods, path = set(sys.modules), list(sys.path)
    yield
    for name in set(sys.modules) - mods:
        del sys.modules[name]
    sys.path[:] = path


def _write(root: Path, tag: str) -> Path:
    """A pipeline folder whose module names are unique to this test (``tag``)."""
    (root / "lib").mkdir(parents=True)
    (root / "pipeline.py").write_text(
        PIPELINE.format(tag=tag).replace("helpers", f"helpers_{tag}")
        .replace("lib.feats", f"lib_{tag}.feats"))
    (root / f"helpers_{tag}.py").write_text(textwrap.dedent("""
        import insitu

        def double(x):
            return 2 * x

        @insitu.step
        def shout(s: str) -> str:
            return s.upper()
    """))
    (root / f"lib_{tag}").mkdir()
    (root / f"lib_{tag}" / "__init__.py").write_text("")
    (root / f"lib_{tag}" / "feats.py").write_text("def label(s):\n    return f'sum {s}'\n")
    (root / f"lazy_{tag}.py").write_text("def finish(x):\n    return x\n")
    (root / "unrelated.py").write_text("raise SystemExit('never imported')\n")
    (root / ".venv" / "lib").mkdir(parents=True)
    (root / ".venv" / "lib" / "stray.py").write_text("x = 1\n")
    return root


def _spec(root: Path) -> dict[str, Any]:
    return compile_pipeline(load_pipeline(f"{root / 'pipeline.py'}:numbers"), {})


def test_the_package_holds_the_users_own_files_and_relative_refs(
        tmp_path: Path, isolated: None, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _write(tmp_path / "code", "a1")
    monkeypatch.chdir(tmp_path)  # the current folder is not the root
    spec = _spec(root)
    sent, pkg = build_package(spec)
    assert pkg is not None
    assert pkg.root == root.resolve()
    assert pkg.files == ["helpers_a1.py", "lazy_a1.py", "lib_a1/__init__.py",
                         "lib_a1/feats.py", "pipeline.py"]
    with zipfile.ZipFile(io.BytesIO(pkg.data)) as z:
        infos = z.infolist()
        assert [i.filename for i in infos] == pkg.files
        assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
        assert {i.external_attr >> 16 for i in infos} == {0o100644}
        assert z.read("pipeline.py") == (root / "pipeline.py").read_bytes()
    import hashlib

    assert pkg.id == "sha256:" + hashlib.sha256(pkg.data).hexdigest()
    fns = {s["id"]: s["function"] for s in sent["steps"]}
    assert fns["make"]["file"] == fns["total"]["file"] == "pipeline.py"
    assert fns["shout"]["file"] == "helpers_a1.py" and fns["shout"]["module"] == "helpers_a1"
    assert sent["source"]["file"] == "pipeline.py"
    # the spec given is left as it was
    assert {s["function"]["file"] for s in spec["steps"]} == {
        str(root.resolve() / "pipeline.py"), str(root.resolve() / "helpers_a1.py")}


def test_the_same_files_give_the_same_bytes(tmp_path: Path, isolated: None) -> None:
    root = _write(tmp_path / "code", "b2")
    spec = _spec(root)
    _, first = build_package(spec)
    os.utime(root / "pipeline.py", (1e9, 1e9))  # another time stamp: the same package
    (root / "helpers_b2.py").chmod(0o600)
    _, again = build_package(spec)
    assert first is not None and again is not None
    assert again.data == first.data and again.digest == first.digest
    with open(root / "lib_b2" / "feats.py", "a") as f:
        f.write("# changed\n")
    _, changed = build_package(spec)
    assert changed is not None and changed.digest != first.digest


def test_a_package_over_the_limit_is_refused_here_naming_the_largest_files(
        tmp_path: Path, isolated: None) -> None:
    root = _write(tmp_path / "code", "c3")
    (root / "lazy_c3.py").write_text("def finish(x):\n    return x\n"
                                     + "".join(f"# {os.urandom(40).hex()}\n"
                                               for _ in range(300)))
    with pytest.raises(UserError) as e:
        build_package(_spec(root), limit=4096)
    assert "the code package of pipeline 'numbers' is" in e.value.message
    assert "over the limit of 4.0 KiB" in e.value.message and str(root) in e.value.message
    assert e.value.hint and e.value.hint.startswith("only code belongs there; the largest "
                                                    "files are lazy_c3.py (")
    assert "INSITU_MAX_PACKAGE" in e.value.hint and "--max-package" in e.value.hint


def test_a_function_outside_the_pipelines_folder_is_named(tmp_path: Path,
                                                          isolated: None) -> None:
    root = _write(tmp_path / "code", "d4")
    spec = _spec(root)
    spec["steps"][0]["function"] = {**spec["steps"][0]["function"], "module": None,
                                    "file": str(tmp_path / "other" / "steps.py")}
    with pytest.raises(UserError) as e:
        build_package(spec)
    assert f"step 'make': make is in {tmp_path / 'other' / 'steps.py'}, outside the " \
           f"pipeline's folder {root.resolve()}" in e.value.message
    assert e.value.hint and str(root.resolve()) in e.value.hint


def test_a_notebook_pipeline_needs_no_package(tmp_path: Path, isolated: None,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cell = textwrap.dedent("""
        import insitu

        @insitu.step
        def square(x: int) -> int:
            return x * x

        @insitu.pipeline
        def cell(x: int = 3):
            square(x)
    """)
    ns: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(cell, "<cell>", "exec"), ns)  # as a notebook cell defines them
    spec = compile_pipeline(ns["cell"], {})
    assert spec["steps"][0]["function"].get("pickled")
    sent, pkg = build_package(spec)  # this process's modules: none under the folder
    assert pkg is None
    assert sent["steps"][0]["function"]["pickled"] == spec["steps"][0]["function"]["pickled"]
