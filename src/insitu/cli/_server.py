"""``insitu server``: run the platform server, and ``insitu server init`` to set it up."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import click

from insitu.cli._app import console
from insitu.cli._common import esc
from insitu.errors import UserError

if TYPE_CHECKING:
    from insitu.scheduler import NodeInfo
    from insitu.server._oidc import OIDCConfig
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
@click.option("--backend", type=click.Choice(["local", "ray"]), default="local",
              show_default=True, help="where submitted runs execute: processes on this "
                                      "machine, or the Ray cluster at --address")
@click.option("--address", default=None, metavar="HOST:PORT",
              help="the Ray cluster for --backend ray (default: the one `insitu cluster up` "
                   "started, or RAY_ADDRESS)")
@click.option("--max-engines", type=click.IntRange(0, 10000), default=8, show_default=True,
              help="runs executing at once on this machine (0: this server runs none, it "
                   "only answers the API)")
@click.option("--max-package", default="50MiB", show_default=True, metavar="SIZE",
              help="the largest code package accepted (e.g. 50MiB, 1GiB)")
@click.option("--lease", "lease_s", type=click.FloatRange(1.0, 3600.0), default=30.0,
              show_default=True, help="seconds an engine's lease on its run lasts; a run "
                                      "whose engine is gone is taken over after this")
@click.option("--poll", "poll_s", type=click.FloatRange(0.05, 60.0), default=1.0,
              hidden=True, help="seconds between two looks for runs to start")
@click.option("--schedule-interval", type=click.FloatRange(0.01, 3600), default=5.0,
              show_default=True, metavar="SECONDS",
              help="how often due schedule ticks are looked for")
@click.option("--clock-file", default=None, metavar="PATH",
              help="for tests: the schedules' current time is read from this file "
                   "(epoch seconds or ISO 8601) instead of the system clock")
@click.option("--oidc-issuer", metavar="URL", default=None,
              help="enable browser login with this OpenID Connect provider")
@click.option("--oidc-client-id", metavar="ID", default=None,
              help="this server's client id at the provider")
@click.option("--oidc-client-secret-file", metavar="PATH", default=None,
              type=click.Path(dir_okay=False),
              help="file holding the client secret (else INSITU_OIDC_CLIENT_SECRET; none: a "
                   "public client, PKCE only)")
@click.option("--oidc-user-claim", default="email", show_default=True,
              help="the ID token claim naming the insitu user: email matches a user's email, "
                   "any other claim a user's name")
@click.option("--oidc-auto-provision", is_flag=True,
              help="create a plain user (never an administrator) for an unknown person")
@click.option("--oidc-redirect-url", metavar="URL", default=None,
              help="the callback URL as browsers reach it (default: this server's "
                   "/api/v1/auth/callback); https makes the cookies Secure")
@click.pass_context
def server(ctx: click.Context, db_url: str | None, host: str, port: int, workers: int,
           backend: str,
           address: str | None, max_engines: int, max_package: str, lease_s: float,
           poll_s: float, schedule_interval: float, clock_file: str | None,
           **oidc: Any) -> None:
    """The platform server: one shared insitu for a team (REST API under /api/v1).

    Submitted runs execute in engine processes its supervisor starts, on --backend."""
    if ctx.invoked_subcommand is not None:
        return
    for option, value, example in (("--schedule-interval", schedule_interval, 5),
                                   ("--lease", lease_s, 30), ("--poll", poll_s, 1)):
        if not math.isfinite(value):
            raise UserError(f"{option} {value} is not a number of seconds",
                            hint=f"give e.g. {option} {example}")
    if address is not None and backend != "ray":
        raise UserError(f"--address {address} names a Ray cluster, and the backend is "
                        f"{backend}", hint="add --backend ray, or leave out --address")
    oidc_config = _oidc_config(**oidc)
    from insitu._config import load_config
    from insitu._units import parse_memory
    from insitu.server import serve
    from insitu.server._app import API_THREADS
    from insitu.server._supervisor import Supervisor
    from insitu.store import UserRecord

    limit = parse_memory(max_package, what="--max-package")
    if backend == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UserError("--backend ray needs Ray installed where the server runs",
                            hint='pip install "ray==2.60.0", or use --backend local') from None

    store = _open(db_url, API_THREADS)
    if not any(u.admin for u in store.select(UserRecord)):
        console.print("[yellow]no administrator yet:[/] run `insitu server init` "
                      "(with the same --db) to create one and get its token")
    _check_listen(host, port)
    console.print(f"insitu server on http://{esc(host)}:{port}/api/v1 "
                  f"(database: {esc(store._describe())}; runs on: {backend}, up to "
                  f"{max_engines} at once)")
    if clock_file:
        console.print(f"[yellow]schedules read the time from {esc(clock_file)}[/] "
                      "(--clock-file: for tests only)")
    supervisor = Supervisor(store, home=load_config().home, backend=backend,
                            address=address, max_engines=max_engines, lease_s=lease_s,
                            poll_s=poll_s)
    supervisor.start()
    try:
        serve(store, host=host, port=port, workers=workers,
              nodes=_local_nodes if backend == "local" else None, backend=backend,
              max_package=limit,
              supervisor=supervisor, clock_file=clock_file,
              schedule_interval=schedule_interval, oidc=oidc_config)
    finally:
        supervisor.stop()


def _local_nodes() -> list[NodeInfo]:
    """The local backend's node: this machine (its capacity shows in /metrics)."""
    from insitu.executor import local_node

    return [local_node()]


def _oidc_config(*, oidc_issuer: str | None, oidc_client_id: str | None,
                 oidc_client_secret_file: str | None, oidc_user_claim: str,
                 oidc_auto_provision: bool, oidc_redirect_url: str | None) -> OIDCConfig | None:
    """The OIDC options as one config (None without --oidc-issuer)."""
    import os

    if not oidc_issuer:
        if oidc_client_id or oidc_client_secret_file or oidc_auto_provision:
            raise UserError("the --oidc-* options need --oidc-issuer",
                            hint="add --oidc-issuer URL (the provider's issuer)")
        return None
    if not oidc_client_id:
        raise UserError("--oidc-issuer needs --oidc-client-id",
                        hint="add --oidc-client-id ID (this server's client at the provider)")
    try:
        import authlib  # noqa: F401
        import joserfc  # noqa: F401
    except ImportError:
        raise UserError("OIDC login needs Authlib, which is not installed",
                        hint='pip install "insitu[server]"') from None
    secret = os.environ.get("INSITU_OIDC_CLIENT_SECRET") or None
    if oidc_client_secret_file:
        try:
            with open(oidc_client_secret_file) as f:
                secret = f.read().strip() or None
        except (OSError, UnicodeDecodeError) as e:
            why = getattr(e, "strerror", None) or str(e)
            raise UserError(f"cannot read the OIDC client secret file "
                            f"{oidc_client_secret_file} ({why})",
                            hint="give --oidc-client-secret-file a readable text file holding "
                                 "the secret") from None
    from insitu.server._oidc import OIDCConfig

    return OIDCConfig(issuer=oidc_issuer, client_id=oidc_client_id, client_secret=secret,
                      user_claim=oidc_user_claim, auto_provision=oidc_auto_provision,
                      redirect_url=oidc_redirect_url)


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
