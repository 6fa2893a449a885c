"""The platform server: one shared insitu for a team, over HTTP (``/api/v1``).

What it owns: the REST API and its OpenAPI document, authentication (API tokens, stored only
as hashes), authorisation (projects and roles, checked in one place from the route table in
``_access.py``), the audit log, and problem documents (RFC 9457) for every error; running
submitted runs: code packages (``_packages``), the supervisor that gives pending runs to
engine processes under a lease (``_supervisor``, ``_engine_proc``).

Layers, each importing only those below it: ``_routes`` (thin FastAPI routes) -> ``_domain``
(what each call does, given a store and the caller) -> ``insitu.store`` (records and SQL).
``_access`` and ``_tokens`` are pure. The server may import ``insitu.store``,
``insitu.errors`` and ``insitu._config``; nothing in insitu imports the server but the CLI.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from insitu.server._app import create_app, serve

__all__ = ["create_app", "serve"]


def __getattr__(name: str) -> Any:
    # the web framework is imported only by what serves (an engine process does not need it)
    if name in ("create_app", "serve"):
        from insitu.server import _app

        return getattr(_app, name)
    raise AttributeError(f"module 'insitu.server' has no attribute {name!r}")
