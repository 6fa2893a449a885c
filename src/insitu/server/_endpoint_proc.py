"""The serving process of one endpoint on the server (started by ``_endpoint_runner``).

``python -m insitu.server._endpoint_proc --project P --name N --socket PATH``, with
``INSITU_DB_URL`` (the server's database: the registry it serves from) and ``INSITU_HOME``
(the endpoint's directory: replica logs, payloads) in its environment. It reads the
endpoint's settings from the database, builds the serving package's
:class:`~insitu.serving.Endpoint` and serves its HTTP app (OIP v2, KServe v1, ``/admin``,
``/metrics``) on the Unix socket only: the server's API is its one door. It stops on SIGTERM,
and gets SIGTERM when the server dies.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="insitu-endpoint")
    ap.add_argument("--project", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--socket", required=True)
    ap.add_argument("--generation", type=int, default=0)
    args = ap.parse_args(argv)
    parent = os.getppid()
    _die_with_parent()
    if os.getppid() != parent:  # the server died before the line above
        return 1

    import uvicorn

    from insitu.errors import InsituError
    from insitu.server._endpoints import spec_of
    from insitu.serving import Endpoint
    from insitu.serving._app import create_app
    from insitu.serving._serve import _config
    from insitu.store import EndpointRecord, open_store

    store = open_store(os.environ["INSITU_DB_URL"], pool_size=2)
    found = store.select(EndpointRecord, project=args.project, name=args.name)
    if not found:
        print(f"endpoint {args.project}/{args.name} no longer exists", flush=True)
        return 0
    try:
        endpoint = Endpoint(spec_of(found[0]), store=store, project=args.project,
                            logdir=os.path.join(os.environ["INSITU_HOME"], "replicas"))
    except InsituError as e:
        print(f"cannot serve endpoint {args.project}/{args.name}: {e.message}"
              + (f" (fix: {e.hint})" if getattr(e, "hint", None) else ""), flush=True)
        return 2
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = f"{args.socket}.{os.getpid()}"
    sock.bind(tmp)
    os.chmod(tmp, 0o600)
    sock.listen(2048)
    server = uvicorn.Server(_config(create_app(endpoint), "127.0.0.1", None, None))
    # the socket appears at its path once the endpoint has started (the server reads that
    # as "running"); until then it is bound under a temporary name
    orig_startup = server.startup

    async def startup(sockets: list[socket.socket] | None = None) -> None:
        await orig_startup(sockets=sockets)
        os.replace(tmp, args.socket)
        print(f"serving {endpoint.model}:{endpoint.stable} as {endpoint.name} "
              f"(generation {args.generation})", flush=True)

    server.startup = startup  # type: ignore[method-assign]
    try:
        server.run(sockets=[sock])
    finally:
        for path in (tmp, args.socket):  # nothing answers there any more
            try:
                os.unlink(path)
            except OSError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
