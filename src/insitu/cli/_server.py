"""``insitu server``: run the platform server, and ``insitu server init`` to set it up."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from insitu.cli._app import console
from insitu.cli._common import esc
from insitu.errors import UserError

if TYPE_CHECKING:
    from insitu.store import SQLStore

_DB = click.option("--db", "db_url", default=None, metavar="URL",
                   help="the database: sqlite:///PATH or postgresql+psycopg://USER:PW@HOST/DB "
                        "(default: INSITU_DB_URL, else INSITU_HOME/insitu.db)")


def _open(db_url: str | None, pool_size: int | None = None) -> SQLStore:
    from insitu.store import open_store

    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise UserError("the server's packages are not installed",
                        hint='pip install "insitu[server]"') from None

    # creates or upgrades the schema (safe when servers race)
    return open_store(db_url, pool_size=pool_size)


@click.group(invoke_without_command=True)
@_DB
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address to listen on (every route but /health needs a token)")
@click.option("--port", type=click.IntRange(1, 65535), default=8420, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="processes answering API requests (the server's other work stays in one)")
@click.pass_context
def server(ctx: click.Context, db_url: str | None, host: str, port: int,
           workers: int) -> None:
    """The platform server: one shared insitu for a team (REST API under /api/v1)."""
    if ctx.invoked_subcommand is not None:
        return
    from insitu.server import serve
    from insitu.server._app import API_THREADS
    from insitu.store import UserRecord

    store = _open(db_url, API_THREADS)
    if not any(u.admin for u in store.select(UserRecord)):
        console.print("[yellow]no administrator yet:[/] run `insitu server init` "
                      "(with the same --db) to create one and get its token")
    _check_listen(host, port)
    console.print(f"insitu server on http://{esc(host)}:{port}/api/v1 "
                  f"(database: {esc(store._describe())})")
    serve(store, host=host, port=port, workers=workers)


def _check_listen(host: str, port: int) -> None:
    """Refuse, before serving, an address this machine cannot listen on."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, kind, proto, _, addr = infos[0]
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(addr)
    except (OSError, UnicodeError) as e:
        raise UserError(f"cannot listen on {host}:{port} ({e})",
                        hint="give --host an address of this machine (127.0.0.1 for this "
                             "machine only, 0.0.0.0 for every interface) and a free --port") \
            from None


@server.command("init")
@_DB
@click.option("--admin", default="admin", show_default=True,
              help="name of the first administrator")
def init(db_url: str | None, admin: str) -> None:
    """Create the first administrator and print its API token (shown only this once)."""
    from insitu.server._domain import initialise

    store = _open(db_url)
    _, token = initialise(store, admin)
    console.print(f"created administrator [bold]{admin}[/] and project [bold]default[/]")
    console.print("API token (shown only now; keep it secret):")
    click.echo(token)
