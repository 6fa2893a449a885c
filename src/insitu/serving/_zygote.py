"""The warm process replicas are forked from.

Started once by the front process (``python -m insitu.serving._zygote FLAVOR...``), it
imports insitu, NumPy and each flavour's library, then forks one replica per ``spawn``, so
a replica (and a scale from zero) pays only for loading its model. Single-threaded, like the
executor's fork server, whose memory-limit machinery it reuses: each replica runs under its
own resident-memory limit (a cgroup where the machine allows it, else a watchdog), with its
stdout and stderr in its own log file. It reports each replica's start and exit (with
whether it was stopped at its memory limit) and kills every replica when the front goes.

Protocol, JSON lines: front -> zygote ``{"op": "spawn", "id", "spec", "socket", "log",
"memory"}``, ``{"op": "kill", "id"}``; zygote -> front ``{"op": "ready"}`` once warm,
``{"op": "started", "id", "pid"}``, ``{"op": "exit", "id", "pid", "code", "oom", "peak"}``.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import sys
import time
from typing import Any

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, os.environ.get("INSITU_SERVE_THREADS", "1"))


def _send(msg: dict[str, Any]) -> None:
    try:
        sys.stdout.write(json.dumps(msg) + "\n")
        sys.stdout.flush()
    except (BrokenPipeError, OSError):
        pass


def main() -> None:
    import gc

    from insitu.executor._forkserver import _die_with_parent
    from insitu.executor._memory import MemoryEnforcer, note_oom
    from insitu.serving._registry import preload
    from insitu.serving._replica import ReplicaSpec, run

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    for flavor in sys.argv[1:]:
        try:
            preload(flavor)
        except Exception as e:  # noqa: BLE001 - the replica reports it when it loads
            print(f"insitu: could not preload {flavor}: {e}", file=sys.stderr)
    import insitu.artifacts  # noqa: F401
    gc.collect()
    gc.freeze()  # replicas share these objects without copying them
    enforcer = MemoryEnforcer()
    sel = selectors.DefaultSelector()
    stdin = sys.stdin.buffer
    sel.register(stdin, selectors.EVENT_READ, None)
    children: dict[int, Any] = {}  # pidfd -> (id, pid, guard, log)
    by_id: dict[str, int] = {}
    buf = b""
    _send({"op": "ready"})
    while True:
        due = [g.next_check for _, _, g, _ in children.values() if g.active]
        timeout = max(0.0, min(due) - time.monotonic()) if due else None
        for key, _ in sel.select(timeout):
            if key.data is None:
                data = os.read(stdin.fileno(), 1 << 16)
                if not data:  # the front is gone: so are its replicas
                    for _, pid, _, _ in children.values():
                        _killpg(pid)
                    enforcer.close()
                    return
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    msg = json.loads(line)
                    if msg["op"] == "spawn":
                        try:
                            spec = ReplicaSpec(**msg["spec"])
                            guard = enforcer.guard(msg.get("memory"))
                            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                            listener.bind(msg["socket"])
                            listener.listen(4)
                        except Exception as e:  # noqa: BLE001 - told to the front
                            _send({"op": "exit", "id": msg["id"], "pid": 0, "code": -1,
                                   "oom": False, "peak": None, "limit": None,
                                   "error": f"could not start a replica: "
                                            f"{type(e).__name__}: {e}"})
                            continue
                        pid = os.fork()
                        if pid == 0:
                            try:
                                os.setpgid(0, 0)
                                sel.close()
                                for fd in children:
                                    os.close(fd)
                                _die_with_parent()
                                guard.join()
                                log = os.open(msg["log"], os.O_WRONLY | os.O_CREAT |
                                              os.O_APPEND, 0o644)
                                os.dup2(log, 1)
                                os.dup2(log, 2)
                                os.close(log)
                                null = os.open(os.devnull, os.O_RDONLY)
                                os.dup2(null, 0)
                                signal.signal(signal.SIGINT, signal.SIG_DFL)
                                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                                run(listener, spec)
                            finally:
                                os._exit(4)
                        listener.close()
                        guard.attach(pid)
                        fd = os.pidfd_open(pid)
                        children[fd] = (msg["id"], pid, guard, msg["log"])
                        by_id[msg["id"]] = fd
                        sel.register(fd, selectors.EVENT_READ, fd)
                        _send({"op": "started", "id": msg["id"], "pid": pid})
                    elif msg["op"] == "kill" and msg["id"] in by_id:
                        _killpg(children[by_id[msg["id"]]][1])
            else:
                fd = key.data
                rid, pid, guard, log = children.pop(fd)
                by_id.pop(rid, None)
                sel.unregister(fd)
                os.close(fd)
                _, status, ru = os.wait4(pid, 0)
                code = os.waitstatus_to_exitcode(status)
                mem = guard.finish(ru.ru_maxrss * 1024)
                if mem.oom:
                    note_oom(log, guard.limit, mem.peak, mem.enforcement, mem.allocation)
                _send({"op": "exit", "id": rid, "pid": pid, "code": code, "oom": mem.oom,
                       "peak": mem.peak, "limit": guard.limit})
        now = time.monotonic()
        for _, _, g, _ in list(children.values()):
            if g.active and now >= g.next_check:
                g.check()


def _killpg(pid: int) -> None:
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            target()
            return
        except (ProcessLookupError, PermissionError):
            continue


if __name__ == "__main__":
    main()
