from __future__ import annotations

import functools
import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from insitu.errors import UserError

SPEC_VERSION = 1


@functools.cache
def schema() -> dict[str, Any]:
    """The JSON Schema of PipelineSpec v1."""
    text = resources.files("insitu.spec").joinpath("pipelinespec.schema.json").read_text()
    return json.loads(text)


def _jsonschema() -> Any:
    """The jsonschema package, imported without ``rfc3987_syntax``: where that optional
    package is installed (JupyterLab brings it), jsonschema imports it to offer "iri" format
    checks, and it builds a parser grammar on import that costs seconds. insitu never checks
    formats, so the import is made as if it were absent; nothing else in the process is
    changed (a later ``import rfc3987_syntax`` works as usual)."""
    if "jsonschema" in sys.modules:
        return sys.modules["jsonschema"]
    block = "rfc3987_syntax" not in sys.modules
    if block:
        sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]
    try:
        import jsonschema
    finally:
        if block:
            del sys.modules["rfc3987_syntax"]
    return jsonschema


def validate_spec(spec: Any, *, source: str = "spec") -> dict[str, Any]:
    """Check ``spec`` against the schema; raise :class:`UserError` listing every violation."""
    jsonschema = _jsonschema()
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(spec), key=lambda e: list(e.path))
    if errors:
        lines = [f"{source} is not a valid insitu PipelineSpec v{SPEC_VERSION}:"]
        for e in errors[:20]:
            where = "/".join(str(p) for p in e.path) or "(top level)"
            lines.append(f"  - at {where}: {e.message}")
        raise UserError("\n".join(lines),
                        hint="write specs with `insitu compile FILE -o spec.json`")
    if spec["spec_version"] != SPEC_VERSION:
        raise UserError(f"{source} has spec_version {spec['spec_version']}; this insitu reads "
                        f"version {SPEC_VERSION}", hint="recompile it with `insitu compile`")
    return spec


def load_spec(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise UserError(f"spec file {p} does not exist") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{p}:{e.lineno}: not JSON: {e.msg}",
                        hint="write specs with `insitu compile FILE -o spec.json`") from None
    return validate_spec(data, source=str(p))
