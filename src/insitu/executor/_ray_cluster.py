"""A local multi-node Ray cluster on this machine: a head and N-1 worker nodes.

Each node is a separate raylet (``ray start``) with its own CPUs, memory, labels
(``insitu.dev/zone``, ``insitu.dev/spot``), a custom resource ``insitu.node/<name>``
that names it, and a data directory under the cluster's base directory (passed to
the node's workers as ``INSITU_DATA_DIR``; :class:`~insitu.executor._ray.RayExecutor`
reads it back as the node's ``insitu.dev/data-dir`` label).

Contracts:

- The cluster uses a temp dir of its own (``<base>/ray``, kept short: Ray puts
  Unix sockets there) and a port of its own, so it never touches a Ray the user runs.
  It does not depend on the user's Ray state either: its processes run without the
  user's ``RAY_ADDRESS`` / ``RAY_AUTH_TOKEN*`` and with :data:`RAY_ENV`, which a driver
  connecting to it uses too (so a token left in ``~/.ray/auth_token`` changes nothing).
- :meth:`LocalRayCluster.down` ends exactly the processes of this cluster, known by
  record (:meth:`LocalRayCluster.processes`), never by a name or pattern. It never runs
  ``ray stop``, which would stop every Ray on the machine.
- The nodes' transfer services (:mod:`insitu.datasets._transfer`) sign and check requests
  with one secret, made once in ``<base>/transfer.key`` (mode 0600) and named to every node
  by ``INSITU_TRANSFER_SECRET_FILE``; a secret already in ``INSITU_TRANSFER_SECRET`` wins.
- The state (address, nodes, sessions, processes) is written to ``<base>/cluster.json``
  so that another process (``insitu cluster down`` / ``status``) can find and stop the
  cluster; an unreadable one is a :class:`ClusterError` saying what to do.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from insitu.datasets._signing import SECRET_FILE_ENV, write_secret_file
from insitu.errors import UserError
from insitu.executor._netns import NamespaceNetwork
from insitu.executor._ray_connect import alive_nodes, connect_to

NODE_RESOURCE = "insitu.node/"
ZONE_LABEL = "insitu.dev/zone"
SPOT_LABEL = "insitu.dev/spot"
DATA_DIR_LABEL = "insitu.dev/data-dir"
STATE_FILE = "cluster.json"
SECRET_FILE = "transfer.key"


@dataclass(frozen=True, kw_only=True)
class LocalNode:
    name: str
    cpus: int
    memory: int
    zone: str
    spot: bool
    data_dir: str
    labels: dict[str, str] = field(default_factory=dict)


def default_base_dir() -> Path:
    """Short on purpose: Ray's socket paths must stay under 107 characters."""
    return Path(tempfile.gettempdir()) / f"insitu-ray-{os.getuid()}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def plan_nodes(n: int, *, cpus_per_node: int, memory_per_node: int, base: Path
               ) -> list[LocalNode]:
    """``n`` nodes named node-0.. in zones a/b (alternating); the last worker is a spot node."""
    nodes = []
    for i in range(n):
        name = f"node-{i}"
        zone = "zone-a" if i % 2 == 0 else "zone-b"
        spot = n > 2 and i == n - 1
        nodes.append(LocalNode(name=name, cpus=cpus_per_node, memory=memory_per_node,
                               zone=zone, spot=spot, data_dir=str(base / "data" / name)))
    return nodes


class ClusterError(UserError):
    """The local cluster could not be started, found or stopped."""


# The settings every process of the local cluster (and a driver connecting to it) uses,
# whatever the user's own Ray state: no token authentication (it listens on this machine
# only), so a token another Ray left in ~/.ray/auth_token does not half-enable it.
RAY_ENV = {"RAY_AUTH_MODE": "disabled"}
_USER_RAY_STATE = ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
_MARKER = ".insitu-ray-cluster"
_MAX_TEMP_DIR = 43   # Ray adds up to 64 characters to it for a socket path (107 at most)


def _started(p: psutil.Process) -> float | None:
    try:
        return float(p.create_time())
    except psutil.Error:
        return None


def _sid(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def _last_error(output: str) -> str:
    """The line of Ray's output that says what went wrong (its last exception line)."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    for ln in reversed(lines):
        head = ln.split(":", 1)[0]
        if head.endswith(("Error", "Exception")) and " " not in head:
            return ln[:400]
    return lines[-1][:400] if lines else "no output"


def _leads_a_session(pid: int) -> bool:
    return _sid(pid) == pid


def _is_alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class LocalRayCluster:
    """Start/stop a local multi-node Ray cluster. Use :meth:`up` (or as a context manager).

    Its processes are known by record, never by a name or a pattern: each ``ray start``
    runs in a session of its own, and ``cluster.json`` holds those session ids and the PID
    and start time of every process seen in them; :meth:`processes` is the recorded
    processes still alive (same PID, same start time), the processes of those sessions
    started since the cluster was, and their descendants.
    """

    def __init__(self, base_dir: str | os.PathLike[str] | None = None) -> None:
        if base_dir is not None and not str(base_dir).strip():
            raise ClusterError("the cluster's base directory is empty",
                               hint="pass a directory, e.g. --base-dir /tmp/my-cluster, or "
                                    f"leave --base-dir out (default {default_base_dir()})")
        self.base = Path(base_dir).expanduser().absolute() if base_dir else default_base_dir()
        self.temp_dir = self.base / "ray"
        self.address: str | None = None
        self.nodes: list[LocalNode] = []
        self.network: NamespaceNetwork | None = None
        self.ray_env: dict[str, str] = dict(RAY_ENV)
        self.created: float | None = None
        self.sessions: list[int] = []
        self.records: list[dict[str, Any]] = []   # {"pid", "started", "name"}

    # -- state ----------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.base / STATE_FILE

    def _save(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(
            {"address": self.address, "temp_dir": str(self.temp_dir),
             "nodes": [asdict(n) for n in self.nodes],
             "network": self.network.as_dict() if self.network else None,
             "ray_env": self.ray_env, "created": self.created, "sessions": self.sessions,
             "processes": self.records}, indent=2))
        os.replace(tmp, self.state_path)

    @classmethod
    def load(cls, base_dir: str | os.PathLike[str] | None = None) -> LocalRayCluster | None:
        """The cluster recorded under ``base_dir``, or None if none was started there.

        Raises :class:`ClusterError` when the record is there but unreadable."""
        c = cls(base_dir)
        try:
            text = c.state_path.read_text()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise c._bad_state(e.strerror or str(e)) from None
        try:
            data = json.loads(text)
            c.address = data["address"]
            c.nodes = [LocalNode(**n) for n in data["nodes"]]
            if data.get("network"):
                c.network = NamespaceNetwork(**data["network"])
            c.ray_env = dict(data.get("ray_env") or RAY_ENV)
            c.created = data.get("created")
            c.sessions = [int(x) for x in data.get("sessions") or []]
            c.records = [{"pid": int(r["pid"]), "started": float(r["started"]),
                          "name": str(r.get("name", ""))} for r in data.get("processes") or []]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            why = f"{type(e).__name__}: {e}" if not isinstance(e, ValueError) else str(e)
            raise c._bad_state(why.splitlines()[0][:200]) from None
        return c

    def _bad_state(self, why: str) -> ClusterError:
        return ClusterError(
            f"the cluster record {self.state_path} cannot be read ({why})",
            hint=f"it is not one insitu wrote, or it was damaged: delete it (rm "
                 f"{self.state_path}); if that cluster still runs, its processes are those "
                 f"using {self.temp_dir}: stop them by hand")

    def _record(self) -> None:
        """Note every process of the cluster's sessions (and their descendants) now."""
        seen = {r["pid"]: r for r in self.records}
        for p in self.processes():
            t = _started(p)
            if t is not None:
                try:
                    name = p.name()
                except psutil.Error:
                    continue
                seen[p.pid] = {"pid": p.pid, "started": t, "name": name}
        self.records = sorted(seen.values(), key=lambda r: r["pid"])

    def processes(self) -> list[psutil.Process]:
        """This cluster's live processes (see the class docstring); never any other."""
        me = os.getuid()
        found: dict[int, psutil.Process] = {}
        for r in self.records:
            try:
                p = psutil.Process(r["pid"])
            except psutil.Error:
                continue
            t = _started(p)
            if t is not None and abs(t - r["started"]) < 0.5:
                found[p.pid] = p
        if self.sessions and self.created is not None:
            # ``ray start``, each session's leader, has exited: a live leader with its PID
            # is a newcomer that reused the number, and its session is not ours
            sessions = {sid for sid in self.sessions
                        if sid in found or not _leads_a_session(sid)}
            for p in psutil.process_iter(["uids", "create_time"]):
                try:
                    if p.pid == os.getpid() or (p.info["uids"] and p.info["uids"].real != me):
                        continue
                    if _sid(p.pid) in sessions and p.info["create_time"] >= self.created - 1:
                        found.setdefault(p.pid, p)
                except psutil.Error:
                    continue
        for p in list(found.values()):
            try:
                for c in p.children(recursive=True):
                    found.setdefault(c.pid, c)
            except psutil.Error:
                continue
        found.pop(os.getpid(), None)
        return list(found.values())

    def running(self) -> bool:
        """Does the cluster's head (its GCS server) run?"""
        for p in self.processes():
            try:
                if p.name().startswith("gcs_server") and p.status() != psutil.STATUS_ZOMBIE:
                    return True
            except psutil.Error:
                continue
        return False

    # -- up / down ------------------------------------------------------------------
    def up(self, n: int = 3, *, cpus_per_node: int = 1, memory_per_node: int = 2 * 1024**3,
           object_store_memory: int = 100 * 1024**2, timeout: float = 120,
           network_mbit: float | None = None, isolated: bool = False) -> str:
        """Start ``n`` nodes (n >= 1) and return the head's address (``host:port``).

        ``isolated``: each node gets a network namespace of its own, joined to this
        machine by a link of ``network_mbit`` Mbit/s (:mod:`insitu.executor._netns`; needs
        root); a head node with no CPUs then runs in this machine's namespace, beside the
        engine, and the ``n`` nodes are workers.

        Ray gives a raylet a fixed 30 s to register with its GCS; on a machine too busy for
        that, the start is made once more, from nothing, before it is reported.
        """
        try:
            return self._up(n, cpus_per_node=cpus_per_node, memory_per_node=memory_per_node,
                            object_store_memory=object_store_memory, timeout=timeout,
                            network_mbit=network_mbit, isolated=isolated)
        except ClusterError as e:  # what it started is stopped already (see _up)
            if "timed out during startup" not in e.message:
                raise
        return self._up(n, cpus_per_node=cpus_per_node, memory_per_node=memory_per_node,
                        object_store_memory=object_store_memory, timeout=timeout,
                        network_mbit=network_mbit, isolated=isolated)

    def _up(self, n: int, *, cpus_per_node: int, memory_per_node: int,
            object_store_memory: int, timeout: float, network_mbit: float | None,
            isolated: bool) -> str:
        if n < 1:
            raise UserError(f"a cluster needs at least one node, not {n}",
                            hint="insitu cluster up --local 3")
        existing = LocalRayCluster.load(self.base)
        if existing is not None and existing.running():
            flag = "" if self.base == default_base_dir() else f" --base-dir {self.base}"
            raise ClusterError(f"a local Ray cluster is already running under {self.base}",
                               hint=f"stop it with `insitu cluster down{flag}` first")
        ray_bin = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
        if not Path(ray_bin).exists():
            raise UserError("the `ray` command is not installed",
                            hint='pip install "ray==2.60.0"')
        if len(str(self.temp_dir)) > _MAX_TEMP_DIR:
            raise ClusterError(f"the base directory {self.base} is too long for Ray's socket "
                               f"paths ({len(str(self.temp_dir))} characters with /ray; at "
                               f"most {_MAX_TEMP_DIR})", hint="use a short one, e.g. "
                               "--base-dir /tmp/ic, or leave --base-dir out")
        if self.temp_dir.exists() and not (self.base / _MARKER).exists():
            raise ClusterError(f"{self.temp_dir} exists and was not made by `insitu cluster up`",
                               hint="choose another --base-dir (an empty or new directory)")
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / _MARKER).touch()
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        self.created = time.time()
        self.nodes = plan_nodes(n, cpus_per_node=cpus_per_node, memory_per_node=memory_per_node,
                                base=self.base)
        port = _free_port()
        host = "127.0.0.1"
        starts: list[tuple[LocalNode, list[str], str]] = [(nd, [], host) for nd in self.nodes]
        if isolated:
            self.network = NamespaceNetwork(n=n, tag="ins" + format(os.getpid() % 4096, "x"),
                                            mbit=network_mbit)
            host = self.network.gateway
            head = LocalNode(name="head", cpus=0, memory=memory_per_node, zone="zone-a",
                             spot=False, data_dir=str(self.base / "data" / "head"))
            starts = [(head, [], host)] + [(nd, self.network.wrap(i), self.network.ip(i))
                                           for i, nd in enumerate(self.nodes)]
            self.nodes = [head, *self.nodes]
        self.address = f"{host}:{port}"
        try:
            if self.network is not None:
                self.network.up()
            self._save()
            for i, (node, wrap, ip) in enumerate(starts):
                Path(node.data_dir).mkdir(parents=True, exist_ok=True)
                try:
                    self._start_node(ray_bin, node, i, port, object_store_memory, timeout,
                                     wrap=wrap, ip=ip, head=host)
                finally:
                    self._record()
                    self._save()
            self._wait_for_nodes(len(starts), timeout)
            self._record()  # the agents each raylet started meanwhile
            self._save()
        except BaseException:
            self.down()
            raise
        return self.address

    def _start_node(self, ray_bin: str, node: LocalNode, i: int, port: int,
                    object_store_memory: int, timeout: float, *, wrap: list[str], ip: str,
                    head: str) -> None:
        labels = {ZONE_LABEL: node.zone, SPOT_LABEL: str(node.spot).lower(), **node.labels}
        worker_lo = 20000 + i * 300  # disjoint worker-port ranges: the nodes share one host
        cmd = [*wrap, ray_bin, "start", f"--temp-dir={self.temp_dir}", f"--num-cpus={node.cpus}",
               "--num-gpus=0", f"--memory={node.memory}",
               f"--object-store-memory={object_store_memory}",
               f"--resources={json.dumps({NODE_RESOURCE + node.name: 1})}",
               f"--labels={','.join(f'{k}={v}' for k, v in labels.items())}",
               f"--node-ip-address={ip}", "--disable-usage-stats",
               f"--dashboard-agent-listen-port={_free_port()}",
               f"--dashboard-agent-grpc-port={_free_port()}",
               f"--runtime-env-agent-port={_free_port()}",
               f"--metrics-export-port={_free_port()}"]
        cmd += [f"--min-worker-port={worker_lo}", f"--max-worker-port={worker_lo + 299}"]
        if i == 0:
            cmd += ["--head", f"--port={port}", "--include-dashboard=false"]
        else:
            cmd += [f"--address={head}:{port}"]
        env = {k: v for k, v in os.environ.items() if k not in _USER_RAY_STATE}
        env.update({"INSITU_DATA_DIR": node.data_dir, "INSITU_NODE": node.name,
                    SECRET_FILE_ENV: str(write_secret_file(self.base / SECRET_FILE)),
                    "RAY_USAGE_STATS_ENABLED": "0", **self.ray_env,
                    # keep idle workers (Ray's default keeps num-cpus of them): attempts take
                    # no Ray CPU, so more run at once than a node has CPUs, and need not wait
                    "RAY_num_workers_soft_limit": str(max(4, 2 * node.cpus))})
        log = self.base / f"start-{node.name}.log"
        # a session of its own: every process it starts keeps this session id (= its PID)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        self.sessions.append(proc.pid)
        code: int | None
        try:
            out, _ = proc.communicate(timeout=timeout)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            out += f"\n`ray start` did not finish within {timeout:g}s"
            code = None
        log.write_text(f"$ {' '.join(cmd)}\n{out}")
        if code != 0:
            raise ClusterError(f"could not start Ray node {node.name}: {_last_error(out)}",
                               hint=f"Ray's full output is in {log}; nothing of the cluster is "
                                    "left running. If another Ray uses this machine's ports, "
                                    "run `insitu cluster up` again")

    def _wait_for_nodes(self, n: int, timeout: float) -> None:
        assert self.address is not None
        connect_to(self.address, self.ray_env)
        deadline = time.monotonic() + timeout
        while len(alive_nodes()) < n:
            if time.monotonic() > deadline:
                raise ClusterError(f"only {len(alive_nodes())} of {n} Ray nodes came up "
                                   f"within {timeout:g}s",
                                   hint=f"Ray's logs are in {self.temp_dir}/session_latest/logs; "
                                        "try fewer nodes (--local) or a longer wait")
            time.sleep(0.2)

    def down(self, timeout: float = 5) -> int:
        """Stop this cluster's processes (SIGTERM, then SIGKILL) and forget the cluster;
        return how many there were. Raises :class:`ClusterError` if any outlives SIGKILL
        (the record is then kept, so that ``down`` can be run again)."""
        procs = self.processes()  # all of them, before any dies and orphans its children
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(procs, timeout=timeout)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
        _, alive = psutil.wait_procs(alive, timeout=5)
        alive = [p for p in alive if _is_alive(p)]
        if self.network is not None:
            self.network.down()
        if alive:
            self._record()
            self._save()
            raise ClusterError(f"{len(alive)} process(es) of the cluster under {self.base} "
                               f"outlived SIGKILL: {', '.join(str(p.pid) for p in alive)}",
                               hint="run `insitu cluster down` again in a moment")
        with contextlib.suppress(FileNotFoundError):
            self.state_path.unlink()
        return len(procs)

    def __enter__(self) -> LocalRayCluster:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.down()
