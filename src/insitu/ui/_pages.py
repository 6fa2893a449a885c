"""Serving the dashboard: the page URLs (each answers the one HTML shell; the JavaScript
draws the page the URL names) and ``/static``, with headers that keep the pages from being
framed or loading anything from elsewhere."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

STATIC = Path(str(resources.files("insitu.ui") / "static"))
# the URLs of pages (a path under one of these is a page too: /projects/P/runs/ID ...)
PAGES = ("/login", "/runs", "/projects", "/models", "/data", "/cluster", "/compare",
         "/studies", "/admin")
_CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
HEADERS = {"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


class _Static(StaticFiles):
    """The assets, with the pages' headers (and revalidated, so an upgrade is seen)."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        resp = super().file_response(*args, **kwargs)
        resp.headers.update(HEADERS)
        resp.headers["Cache-Control"] = "no-cache"
        return resp


def _shell(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={**HEADERS, "Cache-Control": "no-cache"})


def mount(app: Any) -> None:
    """Add the dashboard to a Starlette/FastAPI ``app`` (after its API routes, so they win):
    ``/`` goes to the runs page, each page URL answers the shell, ``/static`` the assets.
    None of these is in the API's document, and none carries data."""
    def root(request: Request) -> Response:
        return RedirectResponse("/runs", status_code=307)

    app.add_route("/", root, methods=["GET"], include_in_schema=False)
    for page in PAGES:
        app.add_route(page, _shell, methods=["GET"], include_in_schema=False)
        app.add_route(page + "/{rest:path}", _shell, methods=["GET"], include_in_schema=False)
    app.mount("/static", _Static(directory=STATIC), name="static")
