"""The supervisor: gives each supervised run that no engine holds to an engine process,
and runs the endpoints' serving processes (``_endpoint_runner``).

A thread of ``insitu server``. Every tick (and at once when the API accepts or resumes a
run) it looks for supervised runs that are pending, or running with no live lease (their
engine is gone: interrupted), claims each one's lease in the database (an atomic
compare-and-set, so two servers on one database never both get a run) and starts an engine
process for it (``_engine_proc``), which renews the lease while it drives the run.

Engines outlive the server on purpose: each is in a session of its own and keeps its own
lease, so a server that is restarted (upgraded, or killed) does not interrupt the steps
running in them; the new server simply finds their leases held and leaves those runs
alone. An engine whose machine dies loses its lease, and its run is taken over, without
re-running its finished steps. ``max_engines`` limits the engines on this machine (leases
held by owners on this host, started by this server or an earlier one).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from insitu.errors import InsituError
from insitu.store import SQLStore

log = logging.getLogger("insitu.server")
DEFAULT_LEASE_S = 30.0


class Supervisor:
    def __init__(self, store: SQLStore, *, home: Path, backend: str = "local",
                 address: str | None = None, max_engines: int = 8,
                 lease_s: float = DEFAULT_LEASE_S, poll_s: float = 1.0) -> None:
        # the API's store: a second one opened in this process would make SQLite drop this
        # process's file locks (POSIX locks end when any descriptor of the file closes)
        self.store = store
        self.db_url = store.url
        self.home = home
        self.backend = backend
        self.address = address
        self.max_engines = max_engines
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.host = socket.gethostname()
        # run id -> its engine and the engine's lease owner
        self.children: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
        self._warm: subprocess.Popen[bytes] | None = None  # an engine waiting for a run
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # the endpoints' serving processes, started and watched by this thread too
        from insitu.server._endpoint_runner import EndpointRunner, host_id

        self.endpoints = EndpointRunner(store, home=home, db_url=self.db_url, by=host_id())

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="supervisor", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Stop handing out runs (running engines go on, see the module doc)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.endpoints.stop()
        warm, self._warm = self._warm, None
        if warm is not None and warm.stdin is not None:
            warm.stdin.close()  # it reads end of input and ends
            try:
                warm.wait(timeout=10)
            except subprocess.TimeoutExpired:
                warm.kill()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.tick()
            except InsituError as e:
                log.warning("supervisor: %s", e.message)
            except Exception:  # noqa: BLE001 - the next tick tries again
                log.exception("supervisor tick failed")
            try:
                self.endpoints.tick()
            except InsituError as e:
                log.warning("endpoints: %s", e.message)
            except Exception:  # noqa: BLE001 - the next tick tries again
                log.exception("endpoints tick failed")
            self._wake.wait(self.poll_s)

    def tick(self, now: float | None = None) -> list[str]:
        """Start engines for the runs that need one; return their ids."""
        now = time.time() if now is None else now
        for rid, (proc, owner) in list(self.children.items()):
            if proc.poll() is not None:  # reap ended engines
                del self.children[rid]
            else:  # renew for it too: an engine still starting cannot renew yet
                self.store.claim_run(rid, owner, now + self.lease_s, now)
        mine = sum(o.startswith(f"{self.host}:") for o in self.store.leases(now).values())
        free = self.max_engines - mine
        started: list[str] = []
        if free <= 0 or self._stop.is_set():
            return started
        try:
            return self._claim(now, free)
        finally:
            if not self._stop.is_set():
                self._keep_warm()

    def _claim(self, now: float, free: int) -> list[str]:
        started: list[str] = []
        for rid in self.store.claimable_runs(now, free):
            owner = f"{self.host}:{os.getpid()}:{secrets.token_hex(6)}"
            if not self.store.claim_run(rid, owner, now + self.lease_s, now):
                continue  # another server got it first
            try:
                self.children[rid] = (self._spawn(rid, owner), owner)
            except OSError:
                log.exception("could not start an engine for run %s", rid)
                self.store.release_run(rid, owner)
                continue
            started.append(rid)
        return started

    def _spawn(self, run_id: str, owner: str) -> subprocess.Popen[bytes]:
        """The warm engine, given this run; else a new engine process."""
        warm, self._warm = self._warm, None
        if warm is not None and warm.poll() is None and warm.stdin is not None:
            try:
                warm.stdin.write(f"{run_id} {owner}\n".encode())
                warm.stdin.close()
                return warm
            except OSError:
                pass  # it died meanwhile: start one
        return self._popen(["--run", run_id, "--owner", owner], self.home / "engines" /
                           f"{run_id}.log")

    def _keep_warm(self) -> None:
        """One engine process started ahead (imports done, database open), so a run
        submitted to an idle server starts without waiting for a Python start-up."""
        if self.max_engines <= 0 or (self._warm is not None and self._warm.poll() is None):
            return
        try:
            self._warm = self._popen([], self.home / "engines" / "warm.log", warm=True)
        except OSError:
            log.exception("could not start a warm engine")

    def _popen(self, extra: list[str], log_file: Path, *, warm: bool = False
               ) -> subprocess.Popen[bytes]:
        logs = log_file.parent
        logs.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        src = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
        env["INSITU_HOME"] = str(self.home)
        env["INSITU_DB_URL"] = self.db_url  # not in argv, where `ps` shows a password
        cmd = [sys.executable, "-m", "insitu.server._engine_proc", *extra,
               "--lease", f"{self.lease_s:g}", "--backend", self.backend]
        if self.address:
            cmd += ["--address", self.address]
        with open(log_file, "ab") as out:
            return subprocess.Popen(cmd, stdin=subprocess.PIPE if warm else subprocess.DEVNULL,
                                    stdout=out, stderr=out, env=env, start_new_session=True,
                                    close_fds=True)
