"""JSON answers encoded directly (orjson where installed): a route that returns
:func:`json_response` skips FastAPI's validation and re-encoding of its return value, which
costs more than the database reads of a page of runs."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Response

try:
    import orjson
except ImportError:  # pragma: no cover - orjson comes with insitu[server]
    orjson = None  # type: ignore[assignment]


def dumps(obj: Any) -> bytes:
    if orjson is not None:
        try:
            return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:  # e.g. an integer beyond 64 bits: the standard encoder copes
            pass
    return json.dumps(obj, default=str, separators=(",", ":")).encode()


def json_response(obj: Any, status_code: int = 200) -> Response:
    return Response(dumps(obj), status_code=status_code, media_type="application/json")
