"""A local multi-node Ray cluster on this machine: a head and N-1 worker nodes.

Each node is a separate raylet (``ray start``) with its own CPUs, memory, labels
(``insitu.dev/zone``, ``insitu.dev/spot``), a custom resource ``insitu.node/<name>``
that names it, and a data directory under the cluster's base directory (passed to
the node's workers as ``INSITU_DATA_DIR``; :class:`~insitu.executor._ray.RayExecutor`
reads it back as the node's ``insitu.dev/data-dir`` label).

Contracts:

- The cluster uses a temp dir of its own (``<base>/ray``, kept short: Ray puts
  Unix sockets there) and a port of its own, so it never touches a Ray the user runs.
- :meth:`LocalRayCluster.stop` ends exactly the processes of this cluster: those
  whose command line names its temp dir. It never runs ``ray stop``, which would
  stop every Ray on the machine.
- The state (address, nodes) is written to ``<base>/cluster.json`` so that another
  process (``insitu cluster down`` / ``status``) can find and stop the cluster.
"""

from __future__ import annotations

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

from insitu.errors import InternalError, UserError
from insitu.executor._netns import NamespaceNetwork

NODE_RESOURCE = "insitu.node/"
ZONE_LABEL = "insitu.dev/zone"
SPOT_LABEL = "insitu.dev/spot"
DATA_DIR_LABEL = "insitu.dev/data-dir"
STATE_FILE = "cluster.json"


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


def _env_has(pid: int, data_dir: str) -> bool:
    """Does the process's environment give it a data directory under ``data_dir``?

    Read raw from /proc: Ray retitles its agents over the argv/environ area, which
    psutil's parsed environ then misses."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f"INSITU_DATA_DIR={data_dir}".encode() in f.read()
    except OSError:
        return False


class LocalRayCluster:
    """Start/stop a local multi-node Ray cluster. Use :meth:`up` (or as a context manager)."""

    def __init__(self, base_dir: str | os.PathLike[str] | None = None) -> None:
        self.base = Path(base_dir) if base_dir else default_base_dir()
        self.temp_dir = self.base / "ray"
        self.address: str | None = None
        self.nodes: list[LocalNode] = []
        self.network: NamespaceNetwork | None = None

    # -- state ----------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.base / STATE_FILE

    def _save(self) -> None:
        self.state_path.write_text(json.dumps(
            {"address": self.address, "temp_dir": str(self.temp_dir),
             "nodes": [asdict(n) for n in self.nodes],
             "network": self.network.as_dict() if self.network else None}, indent=2))

    @classmethod
    def load(cls, base_dir: str | os.PathLike[str] | None = None) -> LocalRayCluster | None:
        """The cluster recorded under ``base_dir``, or None if none was started there."""
        c = cls(base_dir)
        try:
            data = json.loads(c.state_path.read_text())
        except (OSError, ValueError):
            return None
        c.address = data["address"]
        c.nodes = [LocalNode(**n) for n in data["nodes"]]
        if data.get("network"):
            c.network = NamespaceNetwork(**data["network"])
        return c

    def processes(self) -> list[psutil.Process]:
        """This cluster's processes: those whose command line names its temp dir, and Ray's
        agents, which retitle themselves (``ray::DashboardAgent``) but keep, in their
        environment, the data directory this cluster gave their node."""
        token = str(self.temp_dir)
        data = str(self.base / "data") + os.sep
        me = os.getuid()
        out = []
        for p in psutil.process_iter(["cmdline", "uids"]):
            try:
                if p.info["uids"] and p.info["uids"].real != me or p.pid == os.getpid():
                    continue
                cmd = p.info["cmdline"] or []
                named = any(token in a for a in cmd)
                if named or (cmd and cmd[0].startswith("ray::") and _env_has(p.pid, data)):
                    out.append(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return out

    def running(self) -> bool:
        return any("gcs_server" in " ".join((p.info["cmdline"] or [])[:1])
                   for p in self.processes())

    # -- up / down ------------------------------------------------------------------
    def up(self, n: int = 3, *, cpus_per_node: int = 1, memory_per_node: int = 2 * 1024**3,
           object_store_memory: int = 100 * 1024**2, timeout: float = 120,
           network_mbit: float | None = None, isolated: bool = False) -> str:
        """Start ``n`` nodes (n >= 1) and return the head's address (``host:port``).

        ``isolated``: each node gets a network namespace of its own, joined to this
        machine by a link of ``network_mbit`` Mbit/s (:mod:`insitu.executor._netns`; needs
        root); a head node with no CPUs then runs in this machine's namespace, beside the
        engine, and the ``n`` nodes are workers.
        """
        if n < 1:
            raise UserError(f"a cluster needs at least one node, not {n}",
                            hint="insitu cluster up --local 3")
        if self.running():
            raise UserError(f"a local Ray cluster is already running under {self.base}",
                            hint="stop it with `insitu cluster down` first")
        ray_bin = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
        if not Path(ray_bin).exists():
            raise UserError("the `ray` command is not installed",
                            hint='pip install "ray==2.60.0"')
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        self.temp_dir.mkdir(parents=True, exist_ok=True)
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
            for i, (node, wrap, ip) in enumerate(starts):
                Path(node.data_dir).mkdir(parents=True, exist_ok=True)
                self._start_node(ray_bin, node, i, port, object_store_memory, timeout,
                                 wrap=wrap, ip=ip, head=host)
            self._save()
            self._wait_for_nodes(len(starts), timeout)
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
        env = {**os.environ, "INSITU_DATA_DIR": node.data_dir, "INSITU_NODE": node.name,
               "RAY_USAGE_STATS_ENABLED": "0",
               # keep idle workers (Ray's default keeps num-cpus of them): attempts take no
               # Ray CPU, so more run at once than a node has CPUs, and need not wait for one
               "RAY_num_workers_soft_limit": str(max(4, 2 * node.cpus))}
        env.pop("RAY_ADDRESS", None)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise InternalError(f"could not start Ray node {node.name}: `{' '.join(cmd)}` "
                                f"exited with {proc.returncode}:\n{proc.stderr[-3000:]}")

    def _wait_for_nodes(self, n: int, timeout: float) -> None:
        from insitu.executor._ray import alive_nodes, connect

        connect(self.address)
        deadline = time.monotonic() + timeout
        while len(alive_nodes()) < n:
            if time.monotonic() > deadline:
                raise InternalError(f"only {len(alive_nodes())} of {n} Ray nodes came up "
                                    f"within {timeout:g}s (logs: {self.temp_dir}/session_latest"
                                    "/logs)")
            time.sleep(0.2)

    def down(self, timeout: float = 5) -> int:
        """Stop this cluster's processes (SIGTERM, then SIGKILL); return how many there were."""
        procs = self.processes()
        for p in procs:
            try:
                p.send_signal(signal.SIGTERM)
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(procs, timeout=timeout)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=5)
        if self.network is not None:
            self.network.down()
        try:
            self.state_path.unlink()
        except FileNotFoundError:
            pass
        return len(procs)

    def __enter__(self) -> LocalRayCluster:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.down()
