"""Pipelines written in a notebook, ``python -c`` or stdin (issue 10, defect 8).

Their step functions have no importable file: they travel by value (cloudpickle) in
the spec, workers unpickle them, and the cache keys on their code. The notebook test
executes a real ``.ipynb`` in a real Jupyter kernel (nbclient).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

CELLS = [
    """
    import insitu
    """,
    """
    @insitu.step(cpu=0.5)
    def double(x: int) -> int:
        insitu.log_metric("x", x)
        return 2 * x

    @insitu.step(cpu=0.5)
    def total(xs: list) -> int:
        return sum(xs)

    @insitu.pipeline
    def doubled(n: int = 3) -> None:
        total(double.map(list(range(n))))
    """,
    """
    run = insitu.run(doubled, n=4)
    print("FIRST", run.state, run.output("total"), sorted(t.state for t in run.tasks()))
    """,
    """
    again = insitu.run(doubled, n=4)
    print("AGAIN", again.state, sorted({t.state for t in again.tasks()
                                        if t.map_index is not None or t.id == "total"}))
    """,
    """
    with insitu.testing.capture() as logged:
        double.fn(5)
    print("CAPTURED", logged.metrics)
    """,
    """
    @insitu.step(cpu=0.5)
    def total(xs: list) -> int:   # edited: the cache must see the new code
        return sum(xs) + 1000

    edited = insitu.run(doubled, n=4)
    print("EDITED", edited.output("total"),
          sorted({t.state for t in edited.tasks() if t.map_index is not None}),
          edited.task("total").state)
    """,
]


def _lines(text: str, tag: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(tag))


def test_pipeline_defined_in_a_notebook_runs_in_a_jupyter_kernel(home: Path,
                                                                  tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(textwrap.dedent(c).strip()) for c in CELLS]
    path = tmp_path / "pipeline.ipynb"
    nbformat.write(nb, str(path))
    nb = nbformat.read(str(path), as_version=4)
    client = nbclient.NotebookClient(nb, timeout=240, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    nbformat.write(nb, str(path))
    out = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", [])
                  if o.get("output_type") == "stream")
    assert _lines(out, "FIRST") == ("FIRST succeeded 12 ['succeeded', 'succeeded', "
                                    "'succeeded', 'succeeded', 'succeeded', 'succeeded']")
    assert _lines(out, "AGAIN") == "AGAIN succeeded ['cached']"
    assert _lines(out, "CAPTURED") == "CAPTURED {'x': [5.0]}"
    # only the edited step ran again; the map over the unchanged `double` was cached
    assert _lines(out, "EDITED") == "EDITED 1012 ['cached'] succeeded"


SCRIPT = """
import insitu

@insitu.step(cpu=0.5)
def double(x: int) -> int:
    return sum(2 * v for v in [x])  # a nested code object: its address must not reach the key

@insitu.pipeline
def doubled() -> None:
    double.map([0, 1, 2])

run = insitu.run(doubled)
print("RESULT", run.output("double"),
      sorted({t.state for t in run.tasks() if t.map_index is not None}))
"""


@pytest.mark.parametrize("how", ["-c", "stdin"])
def test_pipeline_from_python_c_or_stdin(home: Path, how: str) -> None:
    env = {**os.environ}
    cmd = [sys.executable, "-c", SCRIPT] if how == "-c" else [sys.executable, "-"]
    feed = None if how == "-c" else SCRIPT

    def once() -> str:
        r = subprocess.run(cmd, input=feed, capture_output=True, text=True, timeout=180,
                           env=env, cwd=str(home.parent))
        assert r.returncode == 0, r.stdout + r.stderr
        assert "does not exist" not in r.stderr
        return _lines(r.stdout, "RESULT")

    assert once() == "RESULT [0, 2, 4] ['succeeded']"
    # a new process: the cache key of code without a source file is stable
    assert once() == "RESULT [0, 2, 4] ['cached']"


def test_by_value_functions_are_recorded_in_the_spec(home: Path) -> None:
    code = SCRIPT.replace("run = insitu.run(doubled)", "import json\n"
                          "print('SPEC', json.dumps(doubled.compile()))\nraise SystemExit")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    spec = json.loads(_lines(r.stdout, "SPEC")[5:])
    fn = spec["steps"][0]["function"]
    assert fn["pickled"] and fn["module"] is None and fn["file"] == "<string>"
    assert fn["python"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    from insitu.sdk import load_function

    assert load_function(fn)(21) == 42


def test_a_function_that_cannot_be_pickled_is_a_clear_problem() -> None:
    code = textwrap.dedent("""
        import threading
        import insitu

        LOCK = threading.Lock()

        @insitu.step
        def guarded(x: int) -> int:
            with LOCK:
                return x

        @insitu.pipeline
        def p() -> None:
            guarded(1)

        try:
            p.compile()
        except insitu.errors.ValidationError as e:
            print("PROBLEM", e.problems[0].line, e.problems[0].message)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    line = _lines(r.stdout, "PROBLEM")
    assert line.startswith("PROBLEM 7 step function guarded has no file a worker could import")
    assert "cannot pickle '_thread.lock' object" in line
