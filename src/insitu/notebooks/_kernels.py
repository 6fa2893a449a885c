"""The memory limit on a notebook's kernels, on resident memory as for steps (the
watchdog of :mod:`insitu.executor._memory`: each process's PSS, RSS where PSS cannot be
read). The notebook's limit bounds what the server and its kernels hold together; past it
the largest kernel is stopped (SIGKILL to its process tree), and the server stays up."""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass

from insitu.executor._memory import _children, _kill_all, _tree, resident

_KERNEL_FILE = re.compile(r"kernel-([0-9a-f-]{36})\.json")


@dataclass(frozen=True)
class Kernel:
    id: str
    pid: int
    resident: int   # bytes, its whole process tree


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def kernels(server_pid: int) -> tuple[int, list[Kernel]]:
    """The server's own resident memory, and its kernels (children started with a
    connection file ``kernel-<id>.json``)."""
    tree = _tree(server_pid)
    children = _children(server_pid) or []
    found = []
    for pid in children:
        m = _KERNEL_FILE.search(_cmdline(pid))
        if m:
            found.append(Kernel(id=m.group(1), pid=pid,
                                resident=sum(resident(p) for p in _tree(pid))))
    in_kernels = {p for k in found for p in _tree(k.pid)}
    own = sum(resident(p) for p in tree if p not in in_kernels)
    return own, found


def stop(kernel: Kernel) -> None:
    _kill_all(_tree(kernel.pid), signal.SIGKILL)
