"""What every command shares: the consoles, the store, and escaping of user-supplied text.

Kept apart from ``_app`` so that command modules import it without importing the app
(``_app`` loads them lazily; they never import ``_app``).
"""

from __future__ import annotations

import os
from typing import Any

from rich.console import Console
from rich.markup import escape

from insitu._config import load_config


def _console(stderr: bool = False) -> Console:
    c = Console(highlight=False, stderr=stderr)
    if not c.is_terminal and "COLUMNS" not in os.environ:
        c = Console(highlight=False, stderr=stderr, width=120)
    return c


console = _console()
err_console = _console(stderr=True)


def esc(value: object) -> str:
    """``value`` as text that rich prints literally (user names may hold ``[...]``)."""
    return escape(str(value))


def _store() -> Any:
    from insitu.store import open_store

    return open_store(load_config().db_url)


__all__ = ["_console", "_store", "console", "err_console", "esc"]
