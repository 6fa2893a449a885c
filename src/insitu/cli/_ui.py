"""``insitu ui``: the dashboard over this machine's store, for one person, on loopback.

Each start makes an API token for the local user ``local`` (an administrator of this store,
owner of the project ``default`` where local runs go), good for a day and revoked when the
command ends, and prints a URL holding it in its fragment (``/login#token=...``): the page
trades it for a login session cookie, and a fragment is never sent to a server or logged.
Nothing is served to the network: it listens on 127.0.0.1 only, and every API route needs
that token or the session made from it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import click

from insitu.cli._app import console
from insitu.cli._common import esc

if TYPE_CHECKING:
    from insitu.store import SQLStore

USER = "local"


def local_token(store: SQLStore) -> tuple[str, str]:
    """(token id, token) for this start: the user ``local`` and the project ``default``
    made when missing, a token good for a day."""
    from insitu.server import _tokens
    from insitu.server._domain import DEFAULT_PROJECT, audit
    from insitu.store import MemberRecord, ProjectRecord, TokenRecord, UserRecord

    now = time.time()
    recs: list[Any] = []
    if not store.select(UserRecord, name=USER):
        recs.append(UserRecord(name=USER, created_at=now, admin=True))
    if not store.select(ProjectRecord, name=DEFAULT_PROJECT):
        recs.append(ProjectRecord(name=DEFAULT_PROJECT, created_at=now,
                                  description="runs made without a project"))
    recs.append(MemberRecord(project=DEFAULT_PROJECT, user=USER, role="owner"))
    tid, token, dig = _tokens.mint()
    recs.append(TokenRecord(id=tid, user=USER, digest=dig, created_at=now,
                            name="insitu ui", expires_at=now + 86400))
    recs.append(audit(None, "token.create", obj=f"token/{tid}", detail={"via": "insitu ui"}))
    store.put(*recs)
    return tid, token


@click.command("ui")
@click.option("--port", type=click.IntRange(1, 65535), default=8421, show_default=True,
              help="port on 127.0.0.1")
@click.option("--open/--no-open", "open_browser", default=False,
              help="open the dashboard in the browser")
def ui(port: int, open_browser: bool) -> None:
    """The dashboard over this machine's runs, models and data (on 127.0.0.1 only).

    It prints a URL with a token made for this start: open it to log in."""
    import dataclasses
    import socket

    from insitu._config import load_config
    from insitu.cli._server import _open
    from insitu.server._app import API_THREADS, create_app
    from insitu.server._supervisor import Supervisor
    from insitu.store import TokenRecord

    store = _open(None, API_THREADS)
    tid, token = local_token(store)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as e:
        from insitu.errors import UserError

        raise UserError(f"cannot listen on 127.0.0.1:{port} ({e.strerror})",
                        hint="give another --port (a free one)") from None
    sock.listen(128)  # connections wait in the queue until the app is up
    port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/login#token={token}"
    console.print(f"insitu dashboard over {esc(store._describe())} on http://127.0.0.1:{port}")
    console.print("open this URL to log in (it holds a token made for this start):")
    click.echo(url, nl=True)
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    supervisor = Supervisor(store, home=load_config().home, backend="local", address=None,
                            max_engines=2, lease_s=30.0, poll_s=1.0)
    supervisor.start()
    try:
        import uvicorn

        app = create_app(store, backend="local", supervisor=supervisor)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning",
                                               timeout_keep_alive=75))
        server.run(sockets=[sock])
    finally:
        supervisor.stop()
        found = store.select(TokenRecord, id=tid)
        if found:
            store.put(dataclasses.replace(found[0], revoked_at=time.time()))
        sock.close()
