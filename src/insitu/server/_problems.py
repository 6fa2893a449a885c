"""Errors become HTTP answers here, and only here: each an RFC 9457 problem document
(``application/problem+json``) carrying the same message and fix the CLI prints."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from insitu.errors import (
    Conflict,
    InsituError,
    NotFound,
    PermissionDenied,
    StoreError,
    TooLarge,
    Unauthenticated,
    Unavailable,
    UserError,
)

PROBLEM = "application/problem+json"
log = logging.getLogger("insitu.server")

_STATUS: list[tuple[type[InsituError], int, str]] = [  # first match wins
    (Unauthenticated, 401, "unauthenticated"),
    (PermissionDenied, 403, "forbidden"),
    (NotFound, 404, "not-found"),
    (Conflict, 409, "conflict"),
    (TooLarge, 413, "too-large"),
    (UserError, 400, "bad-request"),
    (StoreError, 503, "store-unavailable"),
    (Unavailable, 503, "unavailable"),
]


def problem(status: int, code: str, title: str, detail: str, *, hint: str | None = None,
            instance: str | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": f"https://insitu.dev/problems/{code}", "title": title,
                            "status": status, "detail": detail}
    if hint:
        body["hint"] = hint
    if instance:
        body["instance"] = instance
    body.update(extra)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def status_of(e: InsituError) -> tuple[int, str]:
    for cls, status, code in _STATUS:
        if isinstance(e, cls):
            return status, code
    return 500, "internal"


def install(app: FastAPI, on_error: Any) -> None:
    """Register the handlers; ``on_error(request, status)`` runs for every error answer
    (the audit log records refused and failed changes through it)."""

    async def insitu_error(request: Request, e: Exception) -> JSONResponse:
        assert isinstance(e, InsituError)
        status, code = status_of(e)
        on_error(request, status)
        title = code.replace("-", " ")
        extra = {"size": e.size, "limit": e.limit} if isinstance(e, TooLarge) else {}
        return problem(status, code, title, e.message, hint=e.hint,
                       instance=request.url.path, **extra)

    async def invalid(request: Request, e: Exception) -> JSONResponse:
        assert isinstance(e, RequestValidationError)
        on_error(request, 422)
        errors = [{"where": ".".join(str(x) for x in err.get("loc", ())),
                   "message": err.get("msg", "")} for err in e.errors()]
        detail = "; ".join(f"{x['where']}: {x['message']}" for x in errors) or "invalid request"
        return problem(422, "invalid-request", "invalid request", detail,
                       hint="see the API's OpenAPI document at /api/v1/openapi.json",
                       instance=request.url.path, errors=errors)

    async def http_error(request: Request, e: Exception) -> JSONResponse:
        assert isinstance(e, StarletteHTTPException)
        on_error(request, e.status_code)
        return problem(e.status_code, "http-" + str(e.status_code), str(e.detail),
                       str(e.detail), instance=request.url.path)

    async def crash(request: Request, e: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        on_error(request, 500)
        return problem(500, "internal", "internal error",
                       "the server failed while handling this request",
                       hint="this is a bug in insitu: report it with the server's log",
                       instance=request.url.path)

    app.add_exception_handler(InsituError, insitu_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, crash)
