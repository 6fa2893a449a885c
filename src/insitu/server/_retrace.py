"""Tracing a pipeline again with other parameter values, for a re-run from the API.

A spec is compiled with its parameters' values (they are the steps' constants), so a run
with other values needs the pipeline's code traced again. The server never traces user code
in its own process: ``insitu compile FILE:PIPELINE -p NAME=VALUE`` runs in a child process
(with a time limit), in the run's unpacked code package (whose package-relative files are
made relative again in the new spec) or, for a run made on this machine, beside its source
file. Editors may run code on the server anyway (their steps); tracing runs only the
pipeline function's body.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from insitu._config import load_config
from insitu.errors import UserError
from insitu.spec._params import bind_declared
from insitu.store import Store

TRACE_TIMEOUT_S = 120.0


def _text(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def changed(spec: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """``params`` checked against the spec's declared parameters (types, unknown names:
    :class:`ParameterError` naming them), and those whose value differs from the one the
    spec was compiled with."""
    out = bind_declared(spec["name"], spec["parameters"], params,
                        defaults=spec.get("values") or {})
    fixed = spec.get("values") or {}
    return {n: out[n] for n in params if n in out and (n not in fixed or out[n] != fixed[n])}


def _relative(spec: dict[str, Any], root: Path) -> dict[str, Any]:
    """The spec with each function ref's file under ``root`` made relative to it."""
    refs = [s.get("function") for s in spec.get("steps", [])] + [spec.get("source")]
    base = root.resolve()
    for ref in refs:
        f = ref.get("file") if isinstance(ref, dict) else None
        if isinstance(f, str) and os.path.isabs(f):
            p = Path(f).resolve()
            if p.is_relative_to(base):
                ref["file"] = p.relative_to(base).as_posix()
    return spec


def retrace(store: Store, spec: dict[str, Any], values: dict[str, Any],
            package: str | None) -> dict[str, Any]:
    """The spec of ``spec``'s pipeline traced again with ``values`` (all of them)."""
    src = spec.get("source") or {}
    file = src.get("file")
    redo = (f"run it from its code with the new values: insitu run FILE:{spec['name']} "
            + " ".join(f"-p {n}={_text(v)}" for n, v in values.items()))
    if not isinstance(file, str) or not file or src.get("pickled") or file.startswith("<"):
        raise UserError(f"pipeline {spec['name']!r} of this run was not compiled from a file, "
                        "so it cannot be traced again with other parameters", hint=redo)
    root: Path | None = None
    if package is not None:
        from insitu.server._packages import unpack

        root = unpack(store, package, load_config().home / "packages")
        where = root / file
    else:
        where = Path(file)
    if not where.is_absolute() or not where.is_file():
        raise UserError(f"the source of pipeline {spec['name']!r} ({file}) is not on the "
                        "server", hint=redo)
    with tempfile.TemporaryDirectory(prefix="insitu-retrace-") as tmp:
        out = Path(tmp) / "spec.json"
        cmd = [sys.executable, "-m", "insitu", "compile", f"{where}:{spec['name']}",
               "-o", str(out)]
        for n, v in values.items():
            cmd += ["-p", f"{n}={_text(v)}"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("INSITU_DB")}
        try:
            done = subprocess.run(cmd, cwd=str(root or where.parent), env=env,
                                  capture_output=True, text=True, timeout=TRACE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise UserError(f"tracing pipeline {spec['name']!r} took over "
                            f"{TRACE_TIMEOUT_S:g} s", hint=redo) from None
        if done.returncode != 0:
            said = " ".join((done.stderr or done.stdout).strip().splitlines()[-6:])
            raise UserError(f"tracing pipeline {spec['name']!r} with the new parameters "
                            f"failed: {said}", hint=redo)
        new = json.loads(out.read_text())
    return _relative(new, root) if root is not None else new
