"""Helpers of the serving tests: a request body, a lean HTTP client, and a real
``insitu serve`` process on a loopback port."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent

ROW = [0.1 * i - 1.0 for i in range(30)]


def body(datatype: str = "FP64", rows: int = 1, name: str = "input-0") -> bytes:
    return json.dumps({"inputs": [{"name": name, "shape": [rows, 30], "datatype": datatype,
                                   "data": ROW * rows}]}).encode()


class Http:
    """A lean keep-alive HTTP client (the stdlib's), so a test's load loop costs little."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=60)

    def request(self, method: str, path: str, data: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
        h = {"content-type": "application/json", **(headers or {})}
        self.conn.request(method, path, body=data, headers=h)
        r = self.conn.getresponse()
        raw = r.read()
        ctype = r.getheader("content-type") or ""
        doc = json.loads(raw) if raw and "json" in ctype else raw.decode()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, doc

    def post(self, path: str, data: bytes, **kw: Any) -> tuple[int, dict[str, str], Any]:
        return self.request("POST", path, data, **kw)

    def get(self, path: str) -> tuple[int, dict[str, str], Any]:
        return self.request("GET", path)

    def close(self) -> None:
        self.conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(cond: Any, timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class ServeProcess:
    """A real ``insitu serve`` process on a loopback port."""

    def __init__(self, home: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "INSITU_HOME": str(home), "COLUMNS": "300",
               "PYTHONPATH": os.pathsep.join([str(HERE.parents[1] / "src"), str(HERE)])}
        self.proc = subprocess.Popen([sys.executable, "-m", "insitu", "serve", *args,
                                      "--port", str(self.port)], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait_live(self) -> None:
        def live() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"insitu serve exited: {self.proc.communicate()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                return False

        wait_for(live, 120, "insitu serve to listen")

    def stop(self) -> tuple[str, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(2)
            try:
                return self.proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.communicate()
