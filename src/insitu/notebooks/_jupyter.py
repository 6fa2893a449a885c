"""The jupyter-server process of one notebook: started on a unix socket (mode 0600) with a
random token of its own, so nothing listens on the network and only the platform server,
which proxies to it, can reach it."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from insitu.errors import InsituError


def base_url(project: str, name: str) -> str:
    return f"/api/v1/projects/{project}/notebooks/{name}/"


def launch(python: Path, *, sock: Path, secret: str, project: str, name: str, home: Path,
           log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start JupyterLab (falls back to plain jupyter-server when JupyterLab is missing)."""
    try:
        import jupyterlab  # noqa: F401
        module = "jupyterlab"
    except ImportError:
        module = "jupyter_server"
    args = [str(python), "-m", module, "--no-browser",
            f"--ServerApp.sock={sock}", "--ServerApp.sock_mode=0600",
            f"--IdentityProvider.token={secret}",
            f"--ServerApp.base_url={base_url(project, name)}",
            f"--ServerApp.root_dir={home}", "--ServerApp.allow_remote_access=True",
            "--KernelManager.autorestart=False",  # a kernel stopped at its limit stays down
            "--ServerApp.shutdown_no_activity_timeout=0"]
    if os.geteuid() == 0:  # a server run as root (containers): its notebooks run as it does
        args.append("--allow-root")
    with open(log, "ab") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=home,
                                env=env, start_new_session=True)


def client(sock: str | Path, secret: str, timeout: float = 10.0) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)),
                        base_url="http://notebook", timeout=timeout,
                        headers={"Authorization": f"token {secret}"})


def wait_ready(proc: subprocess.Popen[bytes], sock: Path, secret: str, prefix: str,
               log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    with client(sock, secret, timeout=5) as c:
        while True:
            if proc.poll() is not None:
                raise InsituError(f"the notebook server exited at start (code "
                                  f"{proc.returncode}): {_tail(log)}")
            if sock.exists():
                try:
                    if c.get(f"{prefix}api/status").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
            if time.monotonic() > deadline:
                raise InsituError(f"the notebook server did not answer in {timeout:.0f} s: "
                                  f"{_tail(log)}")
            time.sleep(0.1)


def status(sock: str, secret: str, prefix: str) -> dict[str, Any] | None:
    """jupyter-server's ``/api/status`` (last activity, connections, kernels), or None."""
    try:
        with client(sock, secret, timeout=5) as c:
            r = c.get(f"{prefix}api/status")
            return dict(r.json()) if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def forget_kernel(sock: str, secret: str, prefix: str, kernel: str) -> None:
    """Tell jupyter-server a kernel is gone (after insitu stopped it)."""
    try:
        with client(sock, secret, timeout=10) as c:
            c.delete(f"{prefix}api/kernels/{kernel}")
    except httpx.HTTPError:
        pass


def _tail(log: Path) -> str:
    try:
        return " | ".join(log.read_text(errors="replace").strip().splitlines()[-5:])
    except OSError:
        return "(no log)"


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
