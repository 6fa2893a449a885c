"""Running an endpoint's app under uvicorn: in the foreground (``insitu serve``), or on a
background thread (:class:`Server`, for notebooks and tests)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from insitu.serving._app import create_app
from insitu.serving._endpoint import Endpoint, EndpointSpec


def _config(app: Any, host: str, port: int | None, sock: socket.socket | None) -> Any:
    import uvicorn

    loop = "uvloop"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        loop = "asyncio"
    # idle keep-alive connections stay open longer than a client's pause between calls
    # (and than a load balancer's idle timeout, often 60 s), so a client reusing one does
    # not race the server closing it; as `insitu server` does
    return uvicorn.Config(app, host=host, port=port or 0, log_level="warning",
                          access_log=False, loop=loop, http="httptools", lifespan="on",
                          timeout_graceful_shutdown=5, timeout_keep_alive=75)


class Server:
    """An endpoint served on ``host:port`` from a background thread (port 0: any free one).
    ``url`` is set once it answers; ``stop()`` ends it and its replicas."""

    def __init__(self, spec: EndpointSpec, *, host: str = "127.0.0.1", port: int = 0,
                 clock: Callable[[], float] = time.monotonic, **kwargs: Any) -> None:
        import uvicorn

        self.endpoint = Endpoint(spec, clock=clock, **kwargs)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.url = f"http://{host}:{self._sock.getsockname()[1]}"
        self._server = uvicorn.Server(_config(create_app(self.endpoint), host, None, None))
        self._thread = threading.Thread(target=self._run, name="insitu-serve", daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            try:
                import uvloop

                factory: Any = uvloop.new_event_loop
            except ImportError:
                factory = None
            with asyncio.Runner(loop_factory=factory) as runner:
                runner.run(self._server.serve(sockets=[self._sock]))
        except BaseException as e:  # noqa: BLE001 - reported by start()
            self._error = e

    def start(self, timeout: float = 60.0) -> Server:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"the server did not start: {self._error}")
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not start in time")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=60)
        self._sock.close()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_forever(endpoint: Endpoint, *, host: str, port: int) -> None:
    """Serve until interrupted (the CLI's foreground server)."""
    import uvicorn

    uvicorn.Server(_config(create_app(endpoint), host, port, None)).run()
