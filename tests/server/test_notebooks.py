"""Notebook servers run by a real ``insitu server`` on loopback (SQLite): real JupyterLab
processes behind the server's proxy, a kernel run over the proxied WebSocket, a kernel over
its memory limit, environments of their own, homes that survive, idle culling by the
server's injected clock (``--clock-file``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from conftest import Server, start_server, stop_server
from insitu.store import open_store

pytest.importorskip("jupyter_server")

API = "/api/v1/projects"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("nb-home")
    clock = home / "clock"
    clock.write_text(str(time.time()))
    saved = os.environ.get("INSITU_NODE_MEMORY")
    os.environ["INSITU_NODE_MEMORY"] = "3GiB"  # the server's node, as its scheduler sees it
    try:
        s = start_server(f"sqlite:///{home / 'server.db'}", home, "--clock-file", str(clock))
    finally:
        if saved is None:
            os.environ.pop("INSITU_NODE_MEMORY")
        else:
            os.environ["INSITU_NODE_MEMORY"] = saved
    a = s.admin
    for user in ("ed", "vi", "bo"):
        assert a.post("/api/v1/users", json={"name": user}).status_code == 201
    assert a.post("/api/v1/projects", json={"name": "lab", "owner": "ed"}).status_code == 201
    assert a.post("/api/v1/projects", json={"name": "other", "owner": "bo"}).status_code == 201
    assert a.put("/api/v1/projects/lab/members/vi", json={"role": "viewer"}).status_code == 200

    def token(user: str) -> str:
        r = a.post("/api/v1/tokens", json={"name": user, "user": user})
        assert r.status_code == 201, r.text
        return str(r.json()["token"])

    w = {"server": s, "home": home, "clock": clock, "ed": token("ed"), "vi": token("vi"),
         "bo": token("bo")}
    try:
        yield w
    finally:
        stop_server(s)  # SIGTERM: the server stops the notebooks it runs
        left = _processes_under(home)
        for pid in left:
            os.kill(pid, 9)
        assert left == [], "notebook processes outlived the server"


def _processes_under(home: Path) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if str(home).encode() in (d / "cmdline").read_bytes():
                    out.append(int(d.name))
            except OSError:
                pass
    return out


def nb_cli(w: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    s: Server = w["server"]
    env = {**os.environ, "INSITU_HOME": str(w["home"] / "cli"), "INSITU_SERVER": s.url,
           "INSITU_TOKEN": w["ed"], "INSITU_PROJECT": "lab", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "insitu", "notebook", *args],
                          capture_output=True, text=True, timeout=300, env=env)


def ws_url(s: Server, project: str, name: str, path: str) -> str:
    return s.url.replace("http://", "ws://") + f"{API}/{project}/notebooks/{name}/{path}"


def execute(ws: ClientConnection, code: str, timeout: float = 120) -> str:
    """Run ``code`` in the kernel behind ``ws``; its text output (result, stream or error)."""
    mid = uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": mid, "username": "test", "session": uuid.uuid4().hex,
                   "msg_type": "execute_request", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}}))
    out: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = json.loads(ws.recv(timeout=deadline - time.monotonic()))
        if msg.get("parent_header", {}).get("msg_id") != mid:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "execute_result":
            out.append(content["data"]["text/plain"])
        elif kind == "stream":
            out.append(content["text"])
        elif kind == "error":
            out.append(f"{content['ename']}: {content['evalue']}")
        elif kind == "status" and content["execution_state"] == "idle":
            return "".join(out)
    raise AssertionError(f"no answer to {code!r} in {timeout} s")


def kernel(w: dict[str, Any], name: str) -> tuple[str, ClientConnection]:
    s: Server = w["server"]
    c = s.client(w["ed"])
    r = c.post(f"{API}/lab/notebooks/{name}/api/kernels", json={"name": "python3"})
    assert r.status_code == 201, r.text
    kid = r.json()["id"]
    ws = connect(ws_url(s, "lab", name, f"api/kernels/{kid}/channels"), max_size=None,
                 additional_headers={"Authorization": f"Bearer {w['ed']}"})
    return kid, ws


def show(w: dict[str, Any], name: str) -> dict[str, Any]:
    r = w["server"].client(w["ed"]).get(f"{API}/lab/notebooks/{name}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def wait_for(what: str, cond: Any, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def held(w: dict[str, Any]) -> list[dict[str, Any]]:
    """What engines placing attempts now see as held by others."""
    store = open_store(w["server"].db_url)
    try:
        with store.exclusive() as tx:
            return list(tx.running_elsewhere("no-run", time.time() - 15))
    finally:
        store.close()


def test_start_open_through_the_proxy_and_run_a_cell(world: dict[str, Any]) -> None:
    w, s = world, world["server"]
    out = nb_cli(w, "start", "one", "--cpu", "1", "--memory", "700MiB", "--idle", "0")
    assert out.returncode == 0, out.stderr + out.stdout
    assert "state        running" in out.stdout
    url = show(w, "one")["url"]
    assert url == f"{s.url}{API}/lab/notebooks/one/lab"
    # its resources are held where every engine places attempts
    assert any(p["memory"] == 700 * 2**20 and p["cpu"] == 1 for p in held(w))

    status = f"{API}/lab/notebooks/one/api/status"
    assert s.client(w["ed"]).get(status).status_code == 200
    assert s.client(w["ed"]).get(url).status_code == 200  # JupyterLab's page
    assert s.client(None).get(status).status_code == 401
    assert s.client(w["bo"]).get(status).status_code == 404  # another project's owner
    assert s.client(w["vi"]).get(status).status_code == 403  # viewers may not run code
    # jupyter-server itself listens on a unix socket only this user may open
    sock = Path(open_store(s.db_url).select(_rec(), project="lab", name="one")[0].sock)
    assert oct(sock.stat().st_mode & 0o777) == "0o600"

    kid, ws = kernel(w, "one")
    with ws:
        assert execute(ws, "1+1") == "2"
    for bad in (None, w["bo"], w["vi"]):
        headers = {"Authorization": f"Bearer {bad}"} if bad else {}
        with pytest.raises(InvalidStatus):
            connect(ws_url(s, "lab", "one", f"api/kernels/{kid}/channels"),
                    additional_headers=headers).close()


def _rec() -> type:
    from insitu.store import NotebookRecord

    return NotebookRecord


def test_own_environment_and_a_kernel_out_of_memory(world: dict[str, Any]) -> None:
    w = world
    out = nb_cli(w, "start", "two", "--cpu", "1", "--memory", "700MiB", "--idle", "600")
    assert out.returncode == 0, out.stderr + out.stdout
    kid1, ws1 = kernel(w, "one")
    _, ws2 = kernel(w, "two")
    with ws1, ws2:
        # what one notebook installs (into its environment's site-packages, as pip does)
        # the other does not see; both layer over the server's packages
        install = ("import sys, sysconfig, pathlib; pathlib.Path(sysconfig.get_paths()"
                   "['purelib'], 'only_in_one.py').write_text('X = 41'); print(sys.prefix)")
        prefix = execute(ws1, install).strip()
        assert prefix.endswith("notebooks/lab/one/env")
        assert execute(ws1, "import only_in_one; only_in_one.X + 1") == "42"
        assert "ModuleNotFoundError" in execute(ws2, "import only_in_one")
        assert execute(ws2, "import insitu, jupyter_server; 'ok'") == "'ok'"

        hog_id, hog = kernel(w, "one")
        with hog:
            hog.send(json.dumps({
                "header": {"msg_id": "hog", "username": "t", "session": "s",
                           "msg_type": "execute_request", "version": "5.3"},
                "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                "content": {"code": "import time\nx = []\nfor i in range(60):\n"
                                    "    x.append(bytearray(64 * 2**20))\n"
                                    "    time.sleep(0.05)", "silent": False}}))
            oom = wait_for("the OOM", lambda: show(w, "one")["oom"])
        assert oom["limit"] == 700 * 2**20 and oom["peak"] >= 700 * 2**20
        assert re.search(r"insitu notebook start one .*--memory \d+GiB$", oom["fix"])
        # the notebook server, its other kernel and the other notebook are untouched
        assert show(w, "one")["state"] == "running"
        assert execute(ws1, "2+3") == "5"
        assert execute(ws2, "3+4") == "7"
        def kernel_ids() -> list[str]:
            got = w["server"].client(w["ed"]).get(f"{API}/lab/notebooks/one/api/kernels")
            return [k["id"] for k in got.json()]

        # the stopped kernel is removed (the server learns of it soon after), not restarted
        wait_for("the stopped kernel to be gone", lambda: hog_id not in kernel_ids())
        assert kid1 in kernel_ids()
    out = nb_cli(w, "show", "one")
    assert out.returncode == 0, out.stderr
    assert "out of memory" in out.stdout and "limit 700.0 MiB" in out.stdout.replace(
        "700 MiB", "700.0 MiB")
    assert "insitu notebook start one" in out.stdout


def test_home_survives_stop_and_start_and_idle_culling(world: dict[str, Any]) -> None:
    w, s = world, world["server"]
    c = s.client(w["ed"])
    r = c.put(f"{API}/lab/notebooks/one/api/contents/keep.txt",
              json={"type": "file", "format": "text", "content": "kept"})
    assert r.status_code in (200, 201), r.text
    out = nb_cli(w, "stop", "one")
    assert out.returncode == 0, out.stderr
    assert show(w, "one")["state"] == "stopped"
    assert len(held(w)) == 1  # only "two" holds its share now
    assert c.get(f"{API}/lab/notebooks/one/api/status").status_code == 404
    out = nb_cli(w, "start", "one", "--memory", "700MiB", "--idle", "0")
    assert out.returncode == 0, out.stderr
    r = c.get(f"{API}/lab/notebooks/one/api/contents/keep.txt")
    assert r.status_code == 200 and r.json()["content"] == "kept"

    # "two" stops once idle past --idle by the server's clock; "one" (--idle 0) never
    w["clock"].write_text(str(time.time() + 3600))
    two = wait_for("the cull", lambda: (n := show(w, "two"))["state"] == "stopped" and n)
    assert two["reason"].startswith("culled: idle for 600 s")
    assert show(w, "one")["state"] == "running"
    w["clock"].write_text(str(time.time()))

    # one that does not fit next to "one" (700 MiB of the node's 3 GiB) waits, with the
    # scheduler's reason, and starts once "one" stops and frees its memory
    out = nb_cli(w, "start", "big", "--memory", "2500MiB", "--idle", "0")
    assert out.returncode == 0, out.stderr
    assert "waiting for  " in out.stdout and "memory" in out.stdout, out.stdout
    assert show(w, "big")["state"] == "waiting"
    assert nb_cli(w, "stop", "one").returncode == 0
    wait_for("big to start", lambda: show(w, "big")["state"] == "running")
    assert c.get(f"{API}/lab/notebooks/big/api/status").status_code == 200

    # bad input: one message with the fix, as a problem document and on the command line
    r = c.post(f"{API}/lab/notebooks", json={"name": "Bad_Name"})
    assert r.status_code == 400 and "lower-case" in r.json()["hint"]
    out = nb_cli(w, "start", "three", "--memory", "lots")
    assert out.returncode != 0 and "lots" in out.stderr + out.stdout
    assert c.get(f"{API}/lab/notebooks/three").status_code == 404

    for name in ("one", "two"):  # "big" is left running: the server stops it as it stops
        out = nb_cli(w, "delete", name)
        assert out.returncode == 0, out.stderr
    assert c.get(f"{API}/lab/notebooks/one").status_code == 404
    assert not (w["home"] / "notebooks" / "lab" / "one").exists()
    assert [n["name"] for n in c.get(f"{API}/lab/notebooks").json()] == ["big"]
    assert "big" in nb_cli(w, "ls").stdout
    assert len(held(w)) == 1
    audit = s.client(w["ed"]).get(f"{API}/lab/audit").json()
    actions = [a["action"] for a in next(v for v in audit.values() if isinstance(v, list))]
    for action in ("notebook.start", "notebook.stop", "notebook.delete"):
        assert action in actions
