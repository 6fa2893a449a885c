"""The fork server of the local executor.

A single-threaded process that imports insitu and the pipeline's modules once,
then forks one child per attempt (cheap, and each attempt still gets a process
of its own). It enforces timeouts, reaps children with ``wait4`` (exit status,
peak RSS, CPU time) and reports each exit to the engine. When the engine goes
away (its pipe closes) it kills every child and exits, so no attempt outlives it.

Protocol (pickled tuples over pipes): engine -> server ``("code", folder)`` (attempts start
in that folder and import from it first: a run's code package), ``("preload", [fn])``,
``("launch", LaunchRequest)``, ``("cancel", key)``, ``("stop",)``;
server -> engine ``("started", key, pid, t)``, ``("exit", key, status...)``.

Memory limits are on resident memory (:mod:`insitu.executor._memory`): a cgroup per
attempt where the machine allows it, else a watchdog; the server looks at each limited
attempt every ``SAMPLE_INTERVAL`` seconds and reports, in its exit, the peak, whether it
was stopped at its limit, the allocation then in progress, and the enforcement used.
"""

from __future__ import annotations

import os
import selectors
import signal
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

from insitu.executor._memory import Guard, MemoryEnforcer, note_oom


class _Child:
    __slots__ = ("key", "pid", "pidfd", "started", "deadline", "timed_out", "cancelled",
                 "guard", "stderr_path")

    def __init__(self, key: str, pid: int, pidfd: int, deadline: float | None, guard: Guard,
                 stderr_path: str) -> None:
        self.key = key
        self.pid = pid
        self.pidfd = pidfd
        self.started = time.time()
        self.deadline = deadline
        self.timed_out = False
        self.cancelled = False
        self.guard = guard
        self.stderr_path = stderr_path


def _die_with_parent() -> None:
    """The attempt dies with the server, even a SIGKILLed one (also one held at its memory
    limit, which nobody would otherwise stop)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _kill(child: _Child) -> None:
    for target in (lambda: os.killpg(child.pid, signal.SIGKILL),
                   lambda: os.kill(child.pid, signal.SIGKILL)):
        try:
            target()
            return
        except (ProcessLookupError, PermissionError):
            continue


def serve(rx: Connection, tx: Connection, memory: str | None = None) -> None:
    import gc

    from insitu.artifacts._store import artifact_store
    from insitu.executor._worker import run_attempt
    from insitu.sdk._loader import load_function

    enforcer = MemoryEnforcer(memory)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sel = selectors.DefaultSelector()
    sel.register(rx.fileno(), selectors.EVENT_READ, None)
    children: dict[int, _Child] = {}
    by_key: dict[str, _Child] = {}
    running = True

    def reap(child: _Child) -> None:
        _, status, ru = os.wait4(child.pid, 0)
        sel.unregister(child.pidfd)
        os.close(child.pidfd)
        del children[child.pidfd]
        by_key.pop(child.key, None)
        code = os.waitstatus_to_exitcode(status)
        mem = child.guard.finish(ru.ru_maxrss * 1024)
        if mem.oom:
            note_oom(child.stderr_path, child.guard.limit, mem.peak, mem.enforcement,
                     mem.allocation)
        try:
            tx.send(("exit", child.key, child.pid, code if code >= 0 else None,
                     -code if code < 0 else None, mem.peak,
                     ru.ru_utime + ru.ru_stime, child.started, time.time(), child.timed_out,
                     child.cancelled, mem.oom, mem.allocation, mem.enforcement))
        except OSError:
            pass

    while running or children:
        now = time.monotonic()
        due = [c.deadline for c in children.values() if c.deadline and not c.timed_out]
        due += [c.guard.next_check for c in children.values() if c.guard.active]
        timeout = max(0.0, min(due) - now) if due else None
        for skey, _ in sel.select(timeout):
            if skey.data is None:
                try:
                    while rx.poll():
                        msg = rx.recv()
                        op = msg[0]
                        if op == "launch":
                            req = msg[1]
                            artifact_store(req.artifacts_url)  # made once, inherited
                            guard = enforcer.guard(req.memory_limit)
                            pid = os.fork()
                            if pid == 0:  # the attempt's process
                                sel.close()
                                for c in children.values():
                                    os.close(c.pidfd)
                                rx.close()
                                tx.close()
                                signal.signal(signal.SIGINT, signal.SIG_DFL)
                                _die_with_parent()
                                guard.join()
                                run_attempt(req)
                            guard.attach(pid)
                            fd = os.pidfd_open(pid)
                            dl = time.monotonic() + req.timeout if req.timeout else None
                            child = _Child(req.key, pid, fd, dl, guard, req.stderr_path)
                            children[fd] = child
                            by_key[req.key] = child
                            sel.register(fd, selectors.EVENT_READ, child)
                            tx.send(("started", req.key, pid, child.started))
                        elif op == "cancel":
                            target = by_key.get(msg[1])
                            if target is not None:
                                target.cancelled = True
                                _kill(target)
                        elif op == "code":
                            _use_code(msg[1])
                        elif op == "preload":
                            for fn in msg[1]:
                                try:
                                    load_function(fn)
                                except BaseException:  # noqa: BLE001 - the child reports it
                                    pass
                            gc.collect()
                            gc.freeze()  # children share these objects without copying
                        elif op == "stop":
                            running = False
                            for c in children.values():
                                c.cancelled = True
                                _kill(c)
                except (EOFError, OSError):  # the engine is gone: stop everything
                    running = False
                    sel.unregister(rx.fileno())
                    for c in children.values():
                        c.cancelled = True
                        _kill(c)
                    tx = _Null()  # type: ignore[assignment]
            else:
                reap(skey.data)
        now = time.monotonic()
        for c in list(children.values()):
            if c.deadline and not c.timed_out and now >= c.deadline:
                c.timed_out = True
                _kill(c)
            elif c.guard.active and now >= c.guard.next_check:
                c.guard.check()
    enforcer.close()


def _use_code(root: str) -> None:
    os.chdir(root)
    if root not in sys.path:
        sys.path.insert(0, root)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [root, os.environ.get("PYTHONPATH")]))


class _Null:
    def send(self, _: Any) -> None:
        pass

    def close(self) -> None:
        pass


def main() -> None:
    rfd, wfd = int(sys.argv[1]), int(sys.argv[2])
    memory = sys.argv[3] if len(sys.argv) > 3 else None
    serve(Connection(rfd, writable=False), Connection(wfd, readable=False), memory or None)


if __name__ == "__main__":
    main()
