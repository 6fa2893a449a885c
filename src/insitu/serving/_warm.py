"""The front process's handle on the warm process (:mod:`insitu.serving._zygote`): start
it, ask it to fork a replica, hear about replicas' starts and exits (on the event loop)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any


class WarmProcess:
    """One warm process per front process. Not thread-safe: used from the event loop."""

    def __init__(self, flavors: list[str], log_path: str) -> None:
        env = dict(os.environ)
        src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        # the warm process sees the modules the front sees (a model's class may live in
        # the user's own module)
        paths = [src, *(p for p in sys.path if p and os.path.isdir(p))]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        self._log = open(log_path, "ab")  # noqa: SIM115 - held for the process's life
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "insitu.serving._zygote", *sorted(set(flavors))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, env=env,
            start_new_session=True)
        assert self.proc.stdout is not None
        self._stdout = self.proc.stdout
        self._buf = b""
        self._ready: asyncio.Future[None] | None = None
        self.on_started: Callable[[str, int], None] = lambda rid, pid: None
        self.on_exit: Callable[[dict[str, Any]], None] = lambda msg: None
        self._eof = False

    @property
    def alive(self) -> bool:
        return not self._eof and self.proc.poll() is None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        os.set_blocking(self._stdout.fileno(), False)
        loop.add_reader(self._stdout.fileno(), self._readable)
        await self._ready

    def _readable(self) -> None:
        try:
            data = os.read(self._stdout.fileno(), 1 << 16)
        except BlockingIOError:
            return
        if not data:
            self._eof = True
            asyncio.get_running_loop().remove_reader(self._stdout.fileno())
            if self._ready is not None and not self._ready.done():
                self._ready.set_exception(RuntimeError(
                    "the warm process of the replicas exited while starting; see its log"))
            return
        self._buf += data
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            msg = json.loads(line)
            if msg["op"] == "ready" and self._ready is not None:
                self._ready.set_result(None)
            elif msg["op"] == "started":
                self.on_started(msg["id"], msg["pid"])
            elif msg["op"] == "exit":
                self.on_exit(msg)

    def _write(self, msg: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())
        self.proc.stdin.flush()

    def spawn(self, rid: str, spec: dict[str, Any], socket_path: str, log_path: str,
              memory: int | None) -> None:
        self._write({"op": "spawn", "id": rid, "spec": spec, "socket": socket_path,
                     "log": log_path, "memory": memory})

    def kill(self, rid: str) -> None:
        if self.alive:
            self._write({"op": "kill", "id": rid})

    def close(self) -> None:
        try:
            loop = asyncio.get_running_loop()
            loop.remove_reader(self._stdout.fileno())
        except (RuntimeError, ValueError):
            pass
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()  # the warm process kills its replicas and exits
            except OSError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._stdout.close()
        self._log.close()
