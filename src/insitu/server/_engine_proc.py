"""One engine process: drives one supervised run while it holds the run's lease.

Started by the supervisor (``python -m insitu.server._engine_proc``), in a session of its
own, after the supervisor claimed the run's lease for it. It renews the lease every quarter
of its length; when a renewal fails, or none succeeded for three quarters of it (a stalled
database, a paused process), the engine ends at once, its attempts with it (they die with
their fork server, which dies with the engine), before the lease lapses and another
engine may take the run over. A resumed run never re-runs a finished step (the engine's
resume adopts finished attempts, see ``insitu.engine._rules.on_resume``).

The run's code package, if any, is unpacked into ``INSITU_HOME/packages/<digest>``; the
engine works in that folder and puts it first on the workers' ``PYTHONPATH``, so the
spec's package-relative ``file`` refs resolve against it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from pathlib import Path

from insitu._config import load_config
from insitu.errors import InsituError, InternalError, StoreError, UserError
from insitu.executor import Executor
from insitu.store import Store
from insitu.store._states import RUN_TERMINAL
from insitu.store._states import RunState as R

log = logging.getLogger("insitu.engine")
LOST_LEASE_EXIT = 75


class LeaseKeeper:
    """Renews ``owner``'s lease on a run; ends the process the moment it may be lost."""

    def __init__(self, store: Store, run_id: str, owner: str, lease_s: float) -> None:
        self.store = store
        self.run_id = run_id
        self.owner = owner
        self.lease_s = lease_s
        self.valid_until = 0.0
        self.done = threading.Event()

    def renew(self) -> bool:
        t0 = time.time()
        try:
            ok = self.store.claim_run(self.run_id, self.owner, t0 + self.lease_s, t0)
        except StoreError as e:
            log.warning("could not renew the lease of run %s: %s", self.run_id, e.message)
            return True  # not lost yet: the watchdog ends us if this goes on
        if ok:
            self.valid_until = t0 + self.lease_s
        return ok

    def start(self) -> bool:
        if not self.renew() or self.valid_until == 0.0:
            return False
        threading.Thread(target=self._renewer, name="lease-renewer", daemon=True).start()
        threading.Thread(target=self._watchdog, name="lease-watchdog", daemon=True).start()
        return True

    def stop(self) -> None:
        self.done.set()

    def _renewer(self) -> None:
        while not self.done.wait(self.lease_s / 4):
            if not self.renew() and not self.done.is_set():
                try:
                    ended = self.store.get_run(self.run_id).state in RUN_TERMINAL
                except InsituError:
                    ended = False
                if not ended:
                    self._lost("another engine holds its lease now")
                return

    def _watchdog(self) -> None:
        margin = self.lease_s / 4
        while not self.done.wait(min(0.2, margin / 2)):
            if time.time() > self.valid_until - margin:
                self._lost(f"its lease could not be renewed for {self.lease_s * 0.75:g}s")

    def _lost(self, why: str) -> None:
        if self.done.is_set():
            return
        sys.stderr.write(f"insitu engine {os.getpid()}: stopping run {self.run_id}: {why}\n")
        sys.stderr.flush()
        os._exit(LOST_LEASE_EXIT)  # at once: no write of ours may follow another's


def _use_package(store: Store, digest: str) -> str:
    """Unpack the run's code package and work in it; its folder."""
    from insitu.server._packages import unpack

    root = unpack(store, digest, load_config().home / "packages")
    os.chdir(root)  # workers start here: package-relative files resolve against it
    sys.path.insert(0, str(root))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    return str(root)


def _executor(backend: str, address: str | None, code: str | None = None) -> Executor:
    """The backend's executor; ``code``: the run's code folder (see Executor.use_code)."""
    if backend == "ray":
        try:
            from insitu.executor._ray import RayExecutor
        except ImportError:
            raise UserError("the server's ray backend needs Ray installed where the server "
                            "runs", hint='pip install "ray==2.60.0"') from None
        return RayExecutor(address, code=code)
    from insitu.executor import LocalExecutor

    return LocalExecutor()


def _fail(store: Store, run_id: str, e: InsituError) -> None:
    """The run cannot start here (its package is missing, its backend unreachable): record
    why, so it is not handed out again and again."""
    from insitu.engine._moves import move

    run = store.get_run(run_id)
    if run.state in RUN_TERMINAL:
        return
    now = time.time()
    started = move(run, R.RUNNING) if run.state == R.PENDING else run
    store.put(move(started, R.FAILED, ended_at=now, started_at=run.started_at or now,
                   error={"message": e.message, "hint": e.hint}))


def drive(store: Store, run_id: str, owner: str, lease_s: float, backend: str,
          address: str | None, executor: Executor | None = None) -> int:
    """Drive the run with ``executor`` (a warm engine's, made ahead), else a new one."""
    from insitu.engine import Engine

    keeper = LeaseKeeper(store, run_id, owner, lease_s)
    if not keeper.start():
        log.warning("run %s: the lease is not ours (any more); not starting", run_id)
        return 0
    try:
        run = store.get_run(run_id)
        if run.state not in (R.PENDING, R.RUNNING):
            return 0
        log.info("run %s: driving it as %s (engine %d)", run_id, owner, os.getpid())
        try:
            code = None
            if run.labels.get("package"):
                code = _use_package(store, str(run.labels["package"]))
            if executor is None:
                executor = _executor(backend, address, code)
            elif code is not None:  # a warm engine's, started before the run was known
                executor.use_code(code)
            engine = Engine(store, executor, config=load_config())
        except StoreError:
            raise
        except InsituError as e:
            _fail(store, run_id, e)
            return 1
        try:
            final = engine.execute(run_id, reopen=False)
        except StoreError:
            raise  # the database is away: the lease lapses and another engine goes on
        except Exception as e:  # noqa: BLE001 - recorded: another engine would fail alike
            log.exception("run %s: the engine failed", run_id)
            logs = load_config().home / "engines" / f"{run_id}.log"
            _fail(store, run_id, InternalError(
                f"the engine driving this run failed: {type(e).__name__}: {e}",
                hint=f"the engine's log is {logs} on the server; once the cause is fixed, "
                     f"`insitu resume {run_id}` goes on without re-running finished steps"))
            return 1
        log.info("run %s ended %s", run_id, final.state)
        return 0
    finally:
        keeper.stop()
        try:
            store.release_run(run_id, owner)
        except InsituError:
            pass  # it lapses on its own


def _assigned(logs: Path) -> tuple[str, str] | None:
    """A warm engine waits for its run: ``RUN_ID OWNER`` on stdin (end of input: the
    supervisor is gone or stopped, so it ends); its output then goes to the run's log."""
    line = sys.stdin.readline().split()
    if len(line) != 2:
        return None
    run_id, owner = line
    logs.mkdir(parents=True, exist_ok=True)
    fd = os.open(logs / f"{run_id}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    return run_id, owner


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m insitu.server._engine_proc")
    p.add_argument("--db", default=None, help="default: INSITU_DB_URL")
    p.add_argument("--run", help="the run (else, warm: read 'RUN OWNER' from stdin)")
    p.add_argument("--owner")
    p.add_argument("--lease", type=float, required=True)
    p.add_argument("--backend", default="local")
    p.add_argument("--address", default=None)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from insitu.store import open_store

    store = open_store(a.db)
    try:
        executor = None
        if a.run is None:  # warm: imports done, database open, workers' fork server
            # started, before a run arrives
            import insitu.engine  # noqa: F401
            import insitu.scheduler  # noqa: F401 - what placing the first step imports

            if a.backend == "local":
                from insitu.executor import LocalExecutor

                executor = LocalExecutor()
                executor.start()
            got = _assigned(load_config().home / "engines")
            if got is None:
                if executor is not None:
                    executor.close()
                return 0
            a.run, a.owner = got
        return drive(store, a.run, a.owner, a.lease, a.backend, a.address, executor)
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())
