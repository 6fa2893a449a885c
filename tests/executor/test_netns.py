"""Nodes with a network of their own: namespaces, veth links limited by tc, and a shard
moving out of one over its transfer service. Needs root and iproute2; skipped otherwise."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from insitu.datasets._registry import hash_path
from insitu.datasets._transfer import fetch
from insitu.executor._netns import NamespaceNetwork, NetnsUnavailable


def _names() -> str:
    return subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout \
        + subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


@pytest.fixture
def network() -> Iterator[NamespaceNetwork]:
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("tc"):
        pytest.skip("network namespaces need root and iproute2")
    net = NamespaceNetwork(n=2, tag="intst", mbit=50, subnet="10.78.0")
    try:
        net.up()
    except NetnsUnavailable as e:
        pytest.skip(f"this machine does not allow network namespaces: {e.message}")
    try:
        yield net
    finally:
        net.down()


def test_each_node_has_its_own_limited_link(network: NamespaceNetwork, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSITU_TRANSFER_SECRET", "a-cluster-secret-for-this-test-0123")
    for i in range(2):
        qdisc = subprocess.run(["tc", "qdisc", "show", "dev", f"intstv{i}"],
                               capture_output=True, text=True).stdout
        assert "tbf" in qdisc and "rate 50Mbit" in qdisc, qdisc
        inner = subprocess.run([*network.wrap(i), "tc", "qdisc", "show", "dev", "eth0"],
                               capture_output=True, text=True).stdout
        assert "rate 50Mbit" in inner, inner
    shard = tmp_path / "part-0.bin"
    shard.write_bytes(os.urandom(2 << 20))
    size, digest = hash_path(str(shard))
    server = subprocess.Popen(
        [*network.wrap(0), sys.executable, "-c",
         "import sys, time\n"
         "from insitu.datasets._transfer import TransferServer\n"
         "s = TransferServer(sys.argv[1], [sys.argv[2]], port=8765)\n"
         "s.start(); print('ready', flush=True); time.sleep(120)\n",
         network.ip(0), str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        fetch(f"http://{network.ip(0)}:8765", str(shard), tmp_path / "got" / "p", size=size,
              digest=digest)  # from node 0's namespace, over its link, to this one
        assert (tmp_path / "got" / "p").read_bytes() == shard.read_bytes()
    finally:
        server.kill()
        server.wait()


def test_down_removes_everything_it_made(network: NamespaceNetwork) -> None:
    assert "intstns0" in _names() and "intstbr" in _names()
    network.down()
    left = [w for w in ("intstns0", "intstns1", "intstv0", "intstv1", "intstbr")
            if w in _names()]
    assert not left
    network.down()  # twice is fine
