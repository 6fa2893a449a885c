"""Helpers for tests that submit runs to a real server: a pipeline folder, its code package
(a deterministic zip, as the client builds it), its spec with package-relative file refs,
and a server process that can be killed and started again on the same database."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx

PIPELINE = '''\
import os
import time

import insitu
from lib import helper

MARKS = {marks!r}


def mark(step):
    with open(os.path.join(MARKS, os.environ["INSITU_RUN_ID"] + ".marks"), "a") as f:
        f.write(step + "\\n")


@insitu.step
def first(n: int) -> int:
    time.sleep({sleep})
    mark("first")
    return helper.twice(n)


@insitu.step
def second(x: int) -> int:
    time.sleep({sleep})
    mark("second")
    return x + 1


@insitu.step
def third(y: int) -> int:
    time.sleep({sleep})
    mark("third")
    return y * 10


@insitu.pipeline
def three(n: int = 1):
    third(second(first(n)))
'''


def write_pipeline(root: Path, marks: Path, sleep: float = 0.0) -> Path:
    """A 3-step pipeline in ``root`` that imports a module of its own (lib/helper.py);
    each step appends its name to ``marks/RUN_ID.marks`` when it has done its work."""
    (root / "lib").mkdir(parents=True, exist_ok=True)
    (root / "lib" / "__init__.py").write_text("")
    (root / "lib" / "helper.py").write_text("def twice(n):\n    return 2 * n\n")
    (root / "pipeline.py").write_text(PIPELINE.format(marks=str(marks), sleep=sleep))
    return root / "pipeline.py"


def build_package(root: Path, files: list[str] | None = None) -> tuple[bytes, str]:
    """A deterministic zip of ``files`` (default: every .py file under ``root``) and its
    bare hex digest."""
    names = files if files is not None else sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*.py"))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(names):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, (root / name).read_bytes())
    data = buf.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def zip_of(members: dict[str, bytes], *, link: str | None = None) -> tuple[bytes, str]:
    """A zip of raw ``members`` (names as given, even bad ones); ``link``: one more member
    marked as a symbolic link."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
        if link:
            info = zipfile.ZipInfo(link, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o120777 << 16
            zf.writestr(info, "/etc/passwd")
    data = buf.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def compile_spec(home: Path, pipeline: Path) -> dict[str, Any]:
    """``insitu compile`` the file, then make its file refs relative to its folder (what the
    client sends)."""
    out = pipeline.parent / "spec.json"
    env = {**os.environ, "INSITU_HOME": str(home)}
    done = subprocess.run([sys.executable, "-m", "insitu", "compile", str(pipeline), "-o",
                           str(out)], capture_output=True, text=True, timeout=120, env=env,
                          cwd=pipeline.parent)
    assert done.returncode == 0, done.stderr
    spec: dict[str, Any] = json.loads(out.read_text())
    out.unlink()
    root = str(pipeline.parent)
    for ref in [s["function"] for s in spec["steps"]] + [spec["source"]]:
        if ref.get("file"):
            ref["file"] = os.path.relpath(ref["file"], root).replace(os.sep, "/")
    return spec


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(db_url: str, home: Path, *args: str, port: int | None = None
          ) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``insitu server`` (already initialised); do not wait for it."""
    port = port or free_port()
    env = {**os.environ, "INSITU_HOME": str(home)}
    with open(home / f"server-{port}.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "insitu", "server", "--db", db_url,
                                 "--port", str(port), *args], stdout=log,
                                stderr=subprocess.STDOUT, env=env)
    return proc, f"http://127.0.0.1:{port}"


def launch(db_url: str, home: Path, *args: str, port: int | None = None
           ) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``insitu server`` (already initialised) and wait until it answers."""
    proc, url = start(db_url, home, *args, port=port)
    port = int(url.rpartition(":")[2])
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise AssertionError((home / f"server-{port}.log").read_text()[-5000:])
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=5).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("server did not answer in 120 s")
        time.sleep(0.1)


def stop(proc: subprocess.Popen[Any]) -> None:
    """Stop a server (or any process) started for a test: SIGTERM, then SIGKILL after 60 s."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_for(cond: Any, timeout: float, what: str, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)
