"""Moving a shard's bytes node to node: a small per-node HTTP service and its client.

Each node of a cluster runs one :class:`TransferServer` (on Ray: an actor pinned to the
node, started by the executor). It answers ``GET /shard?path=PATH&expires=T&sig=HMAC``
with the file's bytes (``sendfile``), or, for a folder, an uncompressed tar of it. Every
request must be signed with the cluster's transfer secret (:mod:`insitu.datasets._signing`):
an unsigned one is 401, an expired or tampered one 403, and neither touches the
filesystem. It serves only what lies under its roots: the node's data directory, its shard
cache and any folder named in ``INSITU_SERVE_ROOTS`` (``os.pathsep``-separated); anything
else (``..`` and symbolic links are resolved first) is 403.

:func:`fetch` streams a replica into a destination path, checking size and sha256 against
the registry before the copy becomes visible (written to a temporary name, then renamed),
so a half-done or corrupt transfer never passes for the shard.

The standard library's ``http.server`` is enough here: one route, a byte stream, no
framework features; the client is ``urllib``. ``server_bind`` is overridden because
``HTTPServer``'s looks the host's name up in DNS, which hangs on hosts without one.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import pathlib
import shutil
import socketserver
import tarfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from insitu.datasets._signing import load_secret, sign, verify

_CHUNK = 1024 * 1024


class TransferError(OSError):
    """A replica could not be fetched (unreachable, refused, or not the registered bytes)."""


def serve_roots(data_dir: str | None, cache_dir: str | None) -> list[str]:
    extra = os.environ.get("INSITU_SERVE_ROOTS", "")
    roots = [data_dir, cache_dir, *extra.split(os.pathsep)]
    return [os.path.realpath(r) for r in roots if r]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: TransferServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib's name
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        if url.path != "/shard" or "path" not in query:
            self.send_error(404, "GET /shard?path=PATH&expires=T&sig=HMAC")
            return
        if any(len(v) != 1 for v in query.values()):
            self.send_error(400, "each query parameter may be given once")
            return
        if "sig" not in query or "expires" not in query:
            self.send_error(401, "this service answers only signed requests")
            return
        why = verify(self.server.secret, query["path"][0], query["expires"][0],
                     query["sig"][0])
        if why is not None:
            self.send_error(403, why)
            return
        path = os.path.realpath(query["path"][0])
        if not any(path == r or path.startswith(r + os.sep) for r in self.server.roots):
            self.send_error(403, f"{path} is outside the folders this node serves")
            return
        if not os.path.exists(path):
            self.send_error(404, f"no such file on this node: {path}")
            return
        if os.path.isdir(path):
            self.send_response(200)
            self.send_header("Content-Type", "application/x-tar")
            self.send_header("Connection", "close")
            self.end_headers()
            with tarfile.open(fileobj=self.wfile, mode="w|") as tar:
                tar.add(path, arcname=".")
            self.close_connection = True
            return
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            self.wfile.flush()
            self.connection.sendfile(f, 0, size)


class TransferServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """Serves files under ``roots`` on ``host:port`` (port 0: any free port) in a thread,
    to requests signed with ``secret`` (None: this process's, see
    :func:`~insitu.datasets._signing.load_secret`, which raises when there is none)."""

    daemon_threads = True

    def __init__(self, host: str, roots: list[str], port: int = 0, *,
                 secret: bytes | None = None) -> None:
        self.secret = load_secret() if secret is None else secret
        self.roots = [os.path.realpath(r) for r in roots]
        super().__init__((host, port), _Handler)
        self._thread: threading.Thread | None = None

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # no DNS lookup of the host's name
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> str:
        self._thread = threading.Thread(target=self.serve_forever, name="insitu-transfer",
                                        daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def fetch(service: str, path: str, target: pathlib.Path, *, size: int, digest: str,
          timeout: float = 30, secret: bytes | None = None) -> None:
    """Copy ``path`` from the node whose transfer service is ``service`` to ``target``,
    with a request signed by ``secret`` (None: this process's transfer secret).

    Raises :class:`TransferError` if the service cannot be reached, refuses, or sends
    bytes that are not the registered ``size`` and ``digest``; ``target`` then does not exist.
    """
    from insitu.datasets._registry import hash_path

    key = load_secret() if secret is None else secret
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".fetch-{os.getpid()}-{threading.get_ident()}-{target.name}"
    url = f"{service}/shard?{urllib.parse.urlencode(sign(key, path))}"
    try:
        try:
            resp = urllib.request.urlopen(url, timeout=timeout)
        except urllib.error.HTTPError as e:
            raise TransferError(f"{service} answered {e.code} for {path}: {e.reason}") from None
        except (urllib.error.URLError, OSError) as e:
            why = getattr(e, "reason", e)
            raise TransferError(f"cannot reach the transfer service {service}: {why}") from None
        with resp:
            if resp.headers.get("Content-Type") == "application/x-tar":
                with tarfile.open(fileobj=resp, mode="r|") as tar:
                    tar.extractall(tmp, filter="data")
                got_size, got = hash_path(str(tmp))
            else:
                h = hashlib.sha256()
                got_size = 0
                with open(tmp, "wb") as out:
                    while chunk := resp.read(_CHUNK):
                        h.update(chunk)
                        out.write(chunk)
                        got_size += len(chunk)
                got = h.hexdigest()
        if (got_size, got) != (size, digest):
            raise TransferError(f"{service} sent {got_size} bytes with sha256 {got[:12]} for "
                                f"{path}; the registry says {size} bytes, {digest[:12]}")
        if not (target.is_dir() and tmp.is_dir()):  # a folder a parallel fetch renamed first stays
            os.replace(tmp, target)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
