"""Connecting this process to a Ray cluster (shared by the Ray executor and the local
cluster, which sits below it and must not import it)."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import ray

from insitu.errors import UserError

_connected: tuple[str, str | None] | None = None  # (address, working directory) in use


class RayUnreachable(UserError):
    """The Ray cluster at the given address cannot be reached."""


def unreachable(addr: str, why: str) -> RayUnreachable:
    return RayUnreachable(
        f"cannot reach the Ray cluster at {addr}: {why}",
        hint="check the address (`ray status --address ADDRESS` on the head shows it), or "
             "start a local one with `insitu cluster up --local 3` and pass the address it "
             "prints: `insitu run --backend ray --address HOST:PORT ...`")


def connect_to(addr: str, env: dict[str, str] | None = None, *,
               working_dir: str | None = None) -> str:
    """Connect to the Ray cluster at ``addr``; ``env`` holds the Ray settings its processes
    were started with (e.g. ``RAY_AUTH_MODE``), which this process then uses too;
    ``working_dir``: the job's working directory, which Ray uploads and ships to the nodes
    (a connection with another one is replaced)."""
    if not addr.startswith(("ray://", "auto")):
        host, _, port = addr.rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=5):
                pass
        except ValueError:
            raise unreachable(addr, "it is not HOST:PORT") from None
        except OSError as e:
            raise unreachable(addr, e.strerror or str(e)) from None
    global _connected
    if ray.is_initialized():
        if _connected is None or _connected == (addr, working_dir):
            return addr
        ray.shutdown()
    if env:
        _use_settings(env)
    try:
        ray.init(address=addr, namespace="insitu", log_to_driver=False,
                 logging_level=logging.ERROR, configure_logging=False,
                 runtime_env={"working_dir": working_dir} if working_dir else None)
    except (ConnectionError, RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise unreachable(addr, first) from None
    _connected = (addr, working_dir)
    return addr


def _use_settings(env: dict[str, str]) -> None:
    for k in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        if k not in env:
            os.environ.pop(k, None)
    os.environ.update(env)
    try:  # Ray caches its settings: read them again
        from ray._raylet import Config  # type: ignore[attr-defined]

        Config.initialize("")
    except (ImportError, AttributeError, RuntimeError):
        pass


def alive_nodes() -> list[dict[str, Any]]:
    return [n for n in ray.nodes() if n.get("Alive")]
