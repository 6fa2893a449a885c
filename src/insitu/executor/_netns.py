"""Nodes with a network of their own on one machine: Linux network namespaces.

:class:`NamespaceNetwork` makes one namespace per node, each joined to a bridge in the
host's namespace by a veth pair whose two ends ``tc`` limits (token bucket) to the
given bandwidth, so every byte a node sends or receives crosses a link of that speed.
The host (the head node, the engine) reaches every node through the bridge.

Contracts:
- It needs root (CAP_NET_ADMIN) and iproute2 (``ip``, ``tc``); :meth:`up` checks both
  and raises :class:`NetnsUnavailable` (a :class:`~insitu.errors.UserError`) saying which
  is missing, leaving nothing behind.
- Names are derived from ``tag`` (at most 6 characters), so two networks with different
  tags never touch each other; :meth:`down` deletes what those names name (so another
  process can call it), and is safe to call twice or after a partial ``up``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import asdict, dataclass

from insitu.errors import UserError


class NetnsUnavailable(UserError):
    """This machine does not let us make network namespaces."""


@dataclass
class NamespaceNetwork:
    n: int                              # nodes (namespaces)
    tag: str = "ins"                    # name prefix
    mbit: float | None = 200.0          # link bandwidth; None: unlimited
    subnet: str = "10.77.0"             # a /24: .1 is the host's bridge, nodes from .2

    @property
    def gateway(self) -> str:
        return f"{self.subnet}.1"

    def ns(self, i: int) -> str:
        return f"{self.tag}ns{i}"

    def ip(self, i: int) -> str:
        return f"{self.subnet}.{i + 2}"

    def wrap(self, i: int) -> list[str]:
        """The prefix that runs a command inside node ``i``'s namespace."""
        return ["ip", "netns", "exec", self.ns(i)]

    @property
    def bridge(self) -> str:
        return f"{self.tag}br"

    def _run(self, *cmd: str) -> None:
        proc = subprocess.run(list(cmd), capture_output=True, text=True)
        if proc.returncode != 0:
            raise NetnsUnavailable(
                f"`{' '.join(cmd)}` failed: {proc.stderr.strip() or proc.returncode}",
                hint="network namespaces need root (or CAP_NET_ADMIN) and iproute2; run as "
                     "root on Linux, or leave the network out")

    def up(self) -> None:
        if len(self.tag) > 6:
            raise UserError(f"network tag {self.tag!r} is too long",
                            hint="use 6 characters or less")
        missing = [c for c in ("ip", "tc") if shutil.which(c) is None]
        if missing:
            raise NetnsUnavailable(f"{' and '.join(missing)} not found",
                                   hint="install iproute2 (Debian: apt-get install iproute2)")
        if os.geteuid() != 0:
            raise NetnsUnavailable("network namespaces need root; this process runs as uid "
                                   f"{os.geteuid()}", hint="run it as root, or without a network")
        try:
            self._run("ip", "link", "add", self.bridge, "type", "bridge")
            self._run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            self._run("ip", "link", "set", self.bridge, "up")
            for i in range(self.n):
                ns, host_end = self.ns(i), f"{self.tag}v{i}"
                self._run("ip", "netns", "add", ns)
                self._run("ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0",
                          "netns", ns)
                self._run("ip", "link", "set", host_end, "master", self.bridge)
                self._run("ip", "link", "set", host_end, "up")
                self._run("ip", "-n", ns, "addr", "add", f"{self.ip(i)}/24", "dev", "eth0")
                self._run("ip", "-n", ns, "link", "set", "eth0", "up")
                self._run("ip", "-n", ns, "link", "set", "lo", "up")
                if self.mbit:
                    rate = f"{self.mbit:g}mbit"
                    for prefix, dev in (([], host_end), (["ip", "netns", "exec", ns], "eth0")):
                        self._run(*prefix, "tc", "qdisc", "add", "dev", dev, "root", "tbf",
                                  "rate", rate, "burst", "256kb", "latency", "50ms")
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        """Delete the namespaces, links and bridge this network's names say are ours."""
        for i in range(self.n):
            subprocess.run(["ip", "link", "del", f"{self.tag}v{i}"], capture_output=True)
            subprocess.run(["ip", "netns", "del", self.ns(i)], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)
