"""The server's endpoints, running: one serving process per endpoint, placed by the scheduler.

Part of the supervisor's loop (``_supervisor``): every tick it compares the endpoints in the
database with the processes it runs. A new endpoint (or one whose settings changed) is
placed through the scheduler on the server's node (its per-replica CPU, memory and GPU times
its most replicas); one that does not fit waits, with the scheduler's reason in its status,
like a waiting step. A placed one gets a serving process (``_endpoint_proc``) that listens
on a Unix socket in a directory only the server's user may enter; the API proxies to it.
A process that dies is started again (after a pause that grows with repeated deaths, with
the cause from its log in the status); a deleted endpoint's process is stopped. Serving
processes end with the server (they get SIGTERM if it dies), and a restarted server starts
them again from the database.

Reservations are kept in one :class:`~insitu.scheduler.ClusterState` for the server's life:
endpoints never over-commit the node between them. Runs' steps and endpoints share the node
both ways: an endpoint is placed around what the engines' running attempts hold (read from
the database in an exclusive transaction, with its status written in it), and engines
place their steps around the endpoints that are starting or running.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from insitu.server._endpoints import endpoint_dir, reserved, socket_path
from insitu.store import EndpointRecord, EndpointStatusRecord, Store

log = logging.getLogger("insitu.server")
Key = tuple[str, str]
MAX_BACKOFF = 30.0


def _node() -> Any:
    from insitu.engine._placement import _scheduler_node
    from insitu.executor._local import local_node

    return _scheduler_node(local_node())


def _request(rec: EndpointRecord) -> Any:
    from insitu.scheduler import Request

    r = reserved(rec)
    return Request(name=f"endpoint/{rec.project}/{rec.name}", cpu=r["cpu"],
                   memory=int(r["memory"]), gpu=r["gpu"])


def never_fits(rec: EndpointRecord) -> str:
    """Why the endpoint could not be placed on the server's node even if it were empty, or
    "" (the API refuses such an endpoint at once)."""
    from insitu.scheduler import ClusterState

    d = ClusterState([_node()]).place([_request(rec)])[0]
    return (d.reason or "it does not fit") if d.never else ""


def _tail(path: Path, lines: int = 6) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


@dataclass
class _Proc:
    popen: subprocess.Popen[bytes]
    generation: int
    placement: Any
    sock: str
    started_at: float
    log: Path
    running: bool = False


class EndpointRunner:
    """Starts, watches and stops the endpoints' serving processes (one owner: the
    supervisor's thread)."""

    def __init__(self, store: Store, *, home: Path, db_url: str, by: str) -> None:
        from insitu.scheduler import ClusterState

        self.store = store
        self.home = Path(home)
        self.db_url = db_url
        self.by = by
        node = _node()
        self.cluster = ClusterState([node])
        self.gpu_index = {node.name: list(range(len(node.gpus)))}
        self._elsewhere: list[Any] = []  # what runs' attempts hold on the node, as last seen
        self.procs: dict[Key, _Proc] = {}
        self.restarts: dict[Key, int] = {}
        self.not_before: dict[Key, float] = {}
        self.last: dict[Key, tuple[Any, ...]] = {}   # the status last written, per endpoint

    # -- the loop's step ----------------------------------------------------------------
    def tick(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        wanted = {(e.project, e.name): e for e in self.store.select(EndpointRecord)}
        for key, p in list(self.procs.items()):
            e = wanted.get(key)
            if e is None or e.generation != p.generation:
                self._stop(key)
                if e is None:
                    self._forget(key)
            elif p.popen.poll() is not None:
                self._died(key, e, p, now)
            elif not p.running and os.path.exists(p.sock):
                p.running = True
                self._status(e, "running", None, p)
        for key, e in sorted(wanted.items(), key=lambda kv: kv[1].created_at):
            if key not in self.procs and now >= self.not_before.get(key, 0.0):
                self._place(key, e, now)
        for s in self.store.select(EndpointStatusRecord):
            if (s.project, s.name) not in wanted:  # deleted while another server ran it
                self._forget((s.project, s.name))

    def _place(self, key: Key, e: EndpointRecord, now: float) -> None:
        """Place it around what runs' steps hold on the node (engines place their steps
        around the endpoints in turn), in one exclusive transaction with its status."""
        with self._shared(now) as tx:
            d = self.cluster.place([_request(e)])[0]
            placement = d.placement
            if placement is None:
                self._status(e, "waiting", d.reason or "it does not fit on any node now",
                             None, tx)
                return
            try:
                self.procs[key] = self._spawn(e, placement, now)
            except OSError as err:
                self.cluster.release(placement)
                self._status(e, "failed", f"could not start its process: {err}", None, tx)
                self.not_before[key] = now + MAX_BACKOFF
                return
            self._status(e, "starting", None, self.procs[key], tx)

    @contextlib.contextmanager
    def _shared(self, now: float) -> Iterator[Any]:
        from insitu.engine._placement import hold_elsewhere
        from insitu.engine._status import STALE_AFTER_S

        if not hasattr(self.store, "exclusive"):
            yield None
            return
        with self.store.exclusive() as tx:
            for ticket in self._elsewhere:
                self.cluster.release(ticket)
            self._elsewhere = hold_elsewhere(
                self.cluster, self.gpu_index,
                tx.running_elsewhere(None, now - STALE_AFTER_S, endpoints=False))
            yield tx

    def _died(self, key: Key, e: EndpointRecord, p: _Proc, now: float) -> None:
        code = p.popen.returncode
        self.cluster.release(p.placement)
        del self.procs[key]
        n = self.restarts[key] = self.restarts.get(key, 0) + 1
        self.not_before[key] = now + min(MAX_BACKOFF, 0.5 * 2 ** min(n - 1, 6)) \
            if n > 1 else now
        how = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
        tail = _tail(p.log)
        reason = f"its serving process {how}" + (f"; its log ends:\n{tail}" if tail else "")
        log.warning("endpoint %s/%s: %s", e.project, e.name, reason)
        self._status(e, "restarting", reason, None)

    # -- processes ------------------------------------------------------------------------
    def _spawn(self, e: EndpointRecord, placement: Any, now: float) -> _Proc:
        sock = socket_path(self.home, e.project, e.name)
        os.makedirs(os.path.dirname(sock), mode=0o700, exist_ok=True)
        os.chmod(os.path.dirname(sock), 0o700)
        try:
            os.unlink(sock)
        except FileNotFoundError:
            pass
        where = endpoint_dir(self.home, e.project, e.name)
        where.mkdir(parents=True, exist_ok=True)
        log_file = where / "endpoint.log"
        env = dict(os.environ)
        src = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
        from insitu._config import load_config

        env["INSITU_ARTIFACTS"] = load_config().artifacts_url  # the server's, not the dir's
        env["INSITU_HOME"] = str(where)
        env["INSITU_DB_URL"] = self.db_url  # not in argv, where `ps` shows a password
        if placement.gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in placement.gpus)
        elif "CUDA_VISIBLE_DEVICES" not in os.environ:
            env["CUDA_VISIBLE_DEVICES"] = ""
        cmd = [sys.executable, "-m", "insitu.server._endpoint_proc", "--project", e.project,
               "--name", e.name, "--socket", sock, "--generation", str(e.generation)]
        with open(log_file, "ab") as out:
            out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting generation "
                      f"{e.generation} on {placement.node}\n".encode())
            out.flush()
            popen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                     env=env, close_fds=True, start_new_session=True)
        return _Proc(popen=popen, generation=e.generation, placement=placement, sock=sock,
                     started_at=now, log=log_file)

    def _stop(self, key: Key, timeout: float = 15.0) -> None:
        p = self.procs.pop(key)
        self.cluster.release(p.placement)
        if p.popen.poll() is None:
            p.popen.send_signal(signal.SIGTERM)  # uvicorn stops, then its replicas
            try:
                p.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.popen.wait()

    def stop(self) -> None:
        """Stop every serving process (the server is stopping; a restart starts them)."""
        for key in list(self.procs):
            self._stop(key)

    # -- status -----------------------------------------------------------------------
    def _forget(self, key: Key) -> None:
        self.store.delete(EndpointStatusRecord, project=key[0], name=key[1])
        for d in (self.restarts, self.not_before, self.last):
            d.pop(key, None)

    def _status(self, e: EndpointRecord, state: str, reason: str | None,
                p: _Proc | None, tx: Any = None) -> None:
        key = (e.project, e.name)
        pl = p.placement if p is not None else None
        sig = (state, reason, e.generation, p.popen.pid if p else None,
               self.restarts.get(key, 0))
        if self.last.get(key) == sig:
            return  # unchanged: no write
        self.last[key] = sig
        placement = {} if pl is None else {
            "node": pl.node, "cpu": pl.cpu_milli / 1000, "memory": pl.memory,
            "gpus": list(pl.gpus), "gpu_milli": pl.gpu_milli}
        rec = EndpointStatusRecord(
            project=e.project, name=e.name, state=state, reason=reason,
            node=pl.node if pl else None, placement=placement,
            pid=p.popen.pid if p else None, generation=e.generation,
            restarts=self.restarts.get(key, 0), started_at=p.started_at if p else None,
            updated_at=time.time(), by=self.by)
        if tx is not None:  # in the transaction that placed it
            tx.upsert(rec)
        else:
            self.store.put(rec)


def host_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
