"""A real ``insitu server`` process on loopback, over SQLite and over PostgreSQL."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from remote import stop


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    db_url: str
    home: Path
    admin_token: str
    proc: subprocess.Popen[bytes]
    tokens: dict[str, str] = field(default_factory=dict)

    clients: dict[str | None, httpx.Client] = field(default_factory=dict)

    def client(self, token: str | None = None) -> httpx.Client:
        """A client sending ``token`` (none: no Authorization header), one per token for
        the server's life: making an httpx client costs tens of milliseconds (it loads the
        system's certificates), more than most requests."""
        c = self.clients.get(token)
        if c is None or c.is_closed:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            c = self.clients[token] = httpx.Client(base_url=self.url, headers=headers,
                                                   timeout=60)
        return c

    @property
    def admin(self) -> httpx.Client:
        return self.client(self.admin_token)


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INSITU_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "insitu", *args], capture_output=True,
                          text=True, timeout=180, env=env)


def start_server(db_url: str, home: Path, *extra: str) -> Server:
    init = cli(home, "server", "init", "--db", db_url)
    assert init.returncode == 0, init.stderr
    token = init.stdout.strip().splitlines()[-1]
    port = _free_port()
    env = {**os.environ, "INSITU_HOME": str(home)}
    log = open(home / "server.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([sys.executable, "-m", "insitu", "server", "--db", db_url,
                             "--port", str(port), *extra], stdout=log, stderr=subprocess.STDOUT,
                            env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:  # wait until it answers (or has died)
        if proc.poll() is not None:
            raise AssertionError((home / "server.log").read_text())
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("server did not answer in 120 s:\n"
                                 + (home / "server.log").read_text())
        time.sleep(0.1)
    return Server(url=url, db_url=db_url, home=home, admin_token=token, proc=proc)


def stop_server(s: Server) -> None:
    for c in s.clients.values():
        c.close()
    s.clients.clear()
    stop(s.proc)


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:
    """One server per test module and database kind (tests make their own names); the kinds
    come from :func:`pytest_generate_tests`."""
    home = tmp_path_factory.mktemp("server-home")
    if request.param == "sqlite":
        db_url = f"sqlite:///{home / 'server.db'}"
    else:
        import secrets

        db_url = request.getfixturevalue("postgres").create_database(
            "s_" + secrets.token_hex(6))
    s = start_server(db_url, home)
    try:
        yield s
    finally:
        stop_server(s)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test module may name the databases its server runs on (``SERVER_DBS``, usually
    ``pg_fixture.databases(...)``); the others run on both."""
    if "server" in metafunc.fixturenames:
        dbs = getattr(metafunc.module, "SERVER_DBS", ["sqlite", "postgresql"])
        metafunc.parametrize("server", dbs, indirect=True, scope="module")
