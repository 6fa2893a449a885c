"""A throw-away PostgreSQL server for the tests: a cluster of its own in a temporary
directory, on a free loopback port, with a password, started once per test session and
stopped (and removed) at its end. Its binaries come from Debian's ``postgresql`` package,
which ``scripts/test-deps`` installs.

Where PostgreSQL is not installed the tests that need it are skipped with the command that
installs it, except under CI (``CI`` set), where they fail: CI must run them.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Cluster:
    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="insitu-pg-"))
        self.data = self.root / "data"
        self.password = secrets.token_hex(16)
        self.port = _free_port()
        self.user: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            os.chmod(self.root, 0o700)
            self.user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        r = subprocess.run([*self.user, *args], capture_output=True, text=True, timeout=180)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {r.stdout}{r.stderr}")

    def start(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(self.password)
        if self.user:
            pw = pwd.getpwnam("postgres")
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "insitu",
                  "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}",
                  "-E", "UTF8", "--no-sync")
        pwfile.unlink()
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=200")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts,
                  "-l", str(self.root / "server.log"), "-w", "-t", "120", "start")

    def url(self, database: str = "postgres") -> str:
        return (f"postgresql+psycopg://insitu:{self.password}@127.0.0.1:{self.port}/"
                f"{database}")

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=insitu "
                             f"password={self.password} dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                      "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[_Cluster]:
    """The session's PostgreSQL server (see the module docstring)."""
    bindir = _bin_dir()
    if bindir is None:
        msg = "PostgreSQL is not installed: run scripts/test-deps (apt-get install postgresql)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    cluster = _Cluster(bindir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def postgres_url(postgres: _Cluster) -> str:
    """A fresh, empty database on the session's PostgreSQL server, for one test."""
    return postgres.create_database("t_" + secrets.token_hex(6))


def databases(*default: str) -> list[str]:
    """The databases a test that runs a real server runs against: ``default`` (the one that
    matters most for it: PostgreSQL for a team's server, SQLite for a laptop's), or both
    with ``INSITU_TEST_ALL_DBS=1``. The store conformance suite, the isolation matrix, the
    API and fuzz tests always run against both."""
    if os.environ.get("INSITU_TEST_ALL_DBS"):
        return ["sqlite", "postgresql"]
    return list(default)
