"""The ``insitu`` command line (click + rich)."""

from insitu.cli._app import app, main

__all__ = ["app", "main"]
