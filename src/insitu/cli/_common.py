"""What every command shares: the consoles, the store, and escaping of user-supplied text.

Kept apart from ``_app`` so that command modules import it without importing the app
(``_app`` loads them lazily; they never import ``_app``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.markup import escape

from insitu._config import load_config

if TYPE_CHECKING:
    from insitu.client import Client


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


def remote_client() -> Any:
    """The client of the server commands act on (``insitu login``, or INSITU_SERVER), or
    None to act on this machine's store."""
    from insitu.client import connect

    return connect()


PROJECT_OPTION = click.option("--project", default=None,
                              help="the server project (default: INSITU_PROJECT, else the "
                                   "one `insitu login` chose, else 'default')")


def server_client(what: str, project: str | None = None) -> Client:
    """The client of the configured server, for commands that exist only there (``what``
    names their objects, e.g. "quotas"), in ``project`` when given; with no server
    configured, refused with how to name one."""
    from insitu.client import connect
    from insitu.errors import UserError

    if project:
        from insitu.client import project_override

        project_override(project)
    client = connect()
    if client is None:
        raise UserError(f"{what} live on an insitu server, and no server is configured",
                        hint="log in to one: insitu login http://HOST:8420 (or set "
                             "INSITU_SERVER=http://HOST:8420 and INSITU_TOKEN)")
    return client


def check_output(path: str, option: str) -> None:
    """Refuse, before any work, an output path whose folder is missing or that is a folder."""
    from pathlib import Path

    from insitu.errors import UserError

    p = Path(path)
    if not path.strip():
        raise UserError(f"{option} needs a file name", hint=f"e.g. {option} out.json")
    if p.is_dir():
        raise UserError(f"{option} {path} is a folder", hint=f"give a file name inside it, "
                        f"e.g. {option} {p / 'out'}")
    parent = p.absolute().parent
    if not parent.is_dir():
        raise UserError(f"cannot write {path}: the folder {parent} does not exist",
                        hint=f"create it first (mkdir -p {parent}) or write elsewhere")


def write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path``, raising when the disk refuses (a full disk, /dev/full):
    the success message is printed only after this returns."""
    import errno
    import os

    try:
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            try:
                os.fsync(f.fileno())
            except OSError as e:
                if e.errno not in (errno.EINVAL, errno.EROFS, errno.ENOTSUP):  # not fsync-able
                    raise
    except OSError as e:
        raise OSError(e.errno, e.strerror, path) from None


__all__ = ["_console", "_store", "check_output", "console", "err_console", "esc",
           "remote_client", "server_client", "write_bytes"]


def local_only(command: str) -> None:
    """Refuse ``command`` (one that changes this machine's store) while a server is
    configured: it would not act on the server the reads show."""
    from insitu.errors import UserError

    client = remote_client()
    if client is not None:
        raise UserError(f"insitu {command} changes this machine's store, not the server "
                        f"{client.server} (project {client.project}) that insitu login or "
                        "INSITU_SERVER chose",
                        hint=f"to change this machine's store, run INSITU_SERVER= insitu "
                             f"{command} ...; `insitu logout` uses this machine for every "
                             "command")
