"""Memory limits on resident memory, one attempt at a time.

A step's ``memory=`` limit bounds the memory the attempt actually holds (as the
kernel's OOM killer sees it), never its address space: thread arenas, BLAS, PyTorch
and CUDA reserve far more address space than they touch. Three ways, best first:

- ``cgroup-v2``: a cgroup per attempt under this process's own cgroup (root, or a
  delegated subtree whose ``cgroup.subtree_control`` offers ``memory``):
  ``memory.high`` at the limit (the kernel throttles there, and insitu stops the attempt),
  ``memory.max`` a little above it as a hard stop, no swap.
- ``cgroup-v1``: a cgroup per attempt in the v1 ``memory`` hierarchy:
  ``memory.limit_in_bytes`` at the limit with the kernel's OOM killer held back
  (``memory.oom_control``), so insitu sees the attempt at its limit, notes what it was
  allocating, and stops it.
- ``watchdog``: where neither is allowed, the attempt's process tree is sampled (the sum
  of each process's proportional set size, PSS; RSS where PSS cannot be read) every
  :data:`SAMPLE_INTERVAL` seconds (every two while below half the limit) and stopped past
  the limit.

A cgroup is used only after a probe showed that its limit is enforced (a sandboxed
kernel may accept the settings and ignore them). ``INSITU_MEMORY_ENFORCEMENT=watchdog``
(or ``MemoryEnforcer("watchdog")``) forces the watchdog.

When an attempt is stopped, :meth:`Guard.finish` says so, with its peak, the limit and,
when one can be seen, the allocation in progress: the largest private anonymous mapping
that was only partly filled (e.g. the 2 GiB array ``np.ones`` was filling).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from insitu._units import format_bytes

ENFORCEMENT_ENV = "INSITU_MEMORY_ENFORCEMENT"
MODES = ("auto", "cgroup", "watchdog")
SAMPLE_INTERVAL = 0.05            # seconds between two looks at an attempt (the watchdog:
                                  # twice that while it holds less than half its limit)
_MIN_ALLOCATION = 16 * 1024**2    # smaller mappings are not reported as "the allocation"


# -- finding this process's cgroup --------------------------------------------------------
def _mounts() -> list[tuple[str, str, str, str]]:
    """(root, mount point, fstype, super options) of each mount, from mountinfo."""
    out = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                a, b = left.split(), right.split()
                if len(a) >= 5 and len(b) >= 3:
                    out.append((a[3], a[4], b[0], b[2]))
    except OSError:
        pass
    return out


def _own(controller: str | None) -> str | None:
    """This process's path in the v1 hierarchy of ``controller`` (None: the v2 one)."""
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, names, path = line.rstrip("\n").split(":", 2)
                if (controller is None and names == "") or \
                        (controller is not None and controller in names.split(",")):
                    return path
    except (OSError, ValueError):
        pass
    return None


def _own_dir(v2: bool) -> Path | None:
    path = _own(None if v2 else "memory")
    if path is None:
        return None
    for root, point, fstype, opts in _mounts():
        if (v2 and fstype == "cgroup2") or (not v2 and fstype == "cgroup"
                                             and "memory" in opts.split(",")):
            rel = path[len(root):] if root != "/" and path.startswith(root) else path
            d = Path(point + rel.rstrip("/"))
            if d.is_dir():
                return d
    return None


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: Path) -> str:
    with open(path) as f:
        return f.read()


def _kv(path: Path) -> dict[str, int]:
    out = {}
    with contextlib.suppress(OSError, ValueError):
        for line in _read(path).splitlines():
            k, _, v = line.partition(" ")
            out[k] = int(v)
    return out


# -- measuring a process tree -------------------------------------------------------------
def _children(pid: int) -> list[int] | None:
    """The children of a process, None where the kernel does not list them."""
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []  # gone
    for tid in tids:
        try:
            out += [int(c) for c in _read(Path(f"/proc/{pid}/task/{tid}/children")).split()]
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}"):
                return out
            return None  # no CONFIG_PROC_CHILDREN
        except (OSError, ValueError):
            continue
    return out


def _tree(pid: int) -> list[int]:
    """The process and its descendants (from /proc/PID/task/TID/children: no scan of every
    process; psutil where the kernel does not list children)."""
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        kids = _children(p)
        if kids is None:
            try:
                return [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
            except psutil.Error:
                return []
        if p != pid or os.path.exists(f"/proc/{p}"):
            out.append(p)
        todo += kids
    return out


def resident(pid: int) -> int:
    """The process's proportional set size (its share of shared pages), else its RSS."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def allocation_in_progress(pids: list[int]) -> int | None:
    """The size of the largest private anonymous writable mapping that is only partly
    resident (what a process was filling when it reached its limit), or None."""
    best: tuple[int, int] | None = None   # (rss, size)
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps") as f:
                cand = False
                size = 0
                for line in f:
                    first = line.split(maxsplit=6)
                    if first and "-" in first[0] and len(first) >= 5 and ":" not in first[0]:
                        perms = first[1]
                        path = first[5].strip() if len(first) > 5 else ""
                        cand = "w" in perms and perms.endswith("p") and path in ("", "[heap]")
                        size = 0
                    elif cand and first[0] == "Size:":
                        size = int(first[1]) * 1024
                    elif cand and first[0] == "Rss:":
                        rss = int(first[1]) * 1024
                        if size >= _MIN_ALLOCATION and size - rss >= 1024**2 and \
                                (best is None or rss > best[0]):
                            best = (rss, size)
        except (OSError, ValueError, IndexError):
            continue
    return best[1] if best else None


def _kill_all(pids: list[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


# -- the enforcer -------------------------------------------------------------------------
_PROBE = """\
import sys
with open(sys.argv[1] + "/cgroup.procs", "w") as f:
    f.write(str(__import__("os").getpid()))
block = bytearray(96 * 1024 * 1024)
for i in range(0, len(block), 4096):
    block[i] = 1
print("survived")
"""


@dataclass
class _Outcome:
    peak: int | None
    oom: bool
    allocation: int | None
    enforcement: str | None


class MemoryEnforcer:
    """Makes one :class:`Guard` per attempt; which enforcement it uses is decided (and
    probed) the first time an attempt has a limit. One per launching process."""

    def __init__(self, mode: str | None = None) -> None:
        mode = mode or os.environ.get(ENFORCEMENT_ENV) or "auto"
        if mode not in MODES:
            from insitu.errors import UserError

            raise UserError(f"{ENFORCEMENT_ENV}={mode!r} is not one of {', '.join(MODES)}",
                            hint=f"unset {ENFORCEMENT_ENV}, or set it to watchdog")
        self.requested = mode
        self._mode: str | None = None
        self._base: Path | None = None
        self.why = ""        # why no cgroup is used, when none is
        self._n = 0
        self._stale: list[Path] = []

    @property
    def mode(self) -> str:
        if self._mode is None:
            self._mode = self._decide()
        return self._mode

    def _decide(self) -> str:
        if self.requested == "watchdog":
            self.why = f"{ENFORCEMENT_ENV}=watchdog"
            return "watchdog"
        for v2 in (True, False):
            own = _own_dir(v2)
            if own is None:
                continue
            base = own / f"insitu-{os.getpid()}"
            try:
                _sweep(own)
                base.mkdir(exist_ok=True)
                if v2:
                    if "memory" not in _read(own / "cgroup.subtree_control").split():
                        _write(own / "cgroup.subtree_control", "+memory")
                    _write(base / "cgroup.subtree_control", "+memory")
                if self._probe(base, v2):
                    self._base = base
                    self.why = ""
                    return "cgroup-v2" if v2 else "cgroup-v1"
                self.why = f"the memory limit of a cgroup under {own} is not enforced"
            except OSError as e:
                self.why = f"cannot use a memory cgroup under {own}: {e.strerror or e}"
            with contextlib.suppress(OSError):
                base.rmdir()
        self.why = self.why or "no cgroup memory controller this process may use"
        return "watchdog"

    @staticmethod
    def _probe(base: Path, v2: bool) -> bool:
        """Is a limit set on a cgroup here enforced? A child touching 96 MiB under 32 MiB
        must be stopped by the kernel. Asked once per boot and cgroup (the answer is kept
        in a file of this user's), not by every process that launches attempts."""
        key = str(base.parent)
        known = _probe_cache().get(key)
        if known is not None:
            return known
        ok = MemoryEnforcer._run_probe(base, v2)
        _probe_cache_put(key, ok)
        return ok

    @staticmethod
    def _run_probe(base: Path, v2: bool) -> bool:
        cg = base / "probe"
        cg.mkdir(exist_ok=True)
        try:
            _write(cg / ("memory.max" if v2 else "memory.limit_in_bytes"), str(32 * 1024**2))
            with contextlib.suppress(OSError):
                _write(cg / ("memory.swap.max" if v2 else "memory.swappiness"), "0")
            proc = subprocess.run([sys.executable, "-S", "-c", _PROBE, str(cg)],
                                  capture_output=True, text=True, timeout=60)
            return proc.returncode == -signal.SIGKILL and "survived" not in proc.stdout
        except subprocess.TimeoutExpired:
            return False
        finally:
            _remove(cg)

    def guard(self, limit: int | None) -> Guard:
        """Before an attempt starts: its guard (a cgroup made ready, when one is used)."""
        if not limit:
            return Guard(None, None, None)
        mode = self.mode
        if mode.startswith("cgroup") and self._base is not None:
            self._n += 1
            cg = self._base / f"a{self._n}"
            try:
                cg.mkdir()
                if mode == "cgroup-v2":
                    headroom = max(limit // 8, 64 * 1024**2)
                    _write(cg / "memory.max", str(limit + headroom))
                    _write(cg / "memory.high", str(limit))
                    with contextlib.suppress(OSError):
                        _write(cg / "memory.swap.max", "0")
                else:
                    _write(cg / "memory.limit_in_bytes", str(limit))
                    with contextlib.suppress(OSError):
                        _write(cg / "memory.swappiness", "0")
                    _write(cg / "memory.oom_control", "1")  # hold the OOM killer: we stop it
                return Guard(limit, mode, cg, self)
            except OSError:
                _remove(cg)
        return Guard(limit, "watchdog", None)

    def close(self) -> None:
        for cg in self._stale:
            _remove(cg)
        if self._base is not None:
            with contextlib.suppress(OSError):
                self._base.rmdir()


def _probe_file() -> Path:
    return Path(tempfile.gettempdir()) / f"insitu-memory-probe-{os.getuid()}.json"


def _boot_id() -> str:
    try:
        return _read(Path("/proc/sys/kernel/random/boot_id")).strip()
    except OSError:
        return ""


def _probe_cache() -> dict[str, bool]:
    path = _probe_file()
    try:
        st = path.stat()
        if st.st_uid != os.getuid() or st.st_mode & 0o022:
            return {}  # not ours alone: not trusted
        data = json.loads(path.read_text())
        if data.get("boot_id") != _boot_id() or not _boot_id():
            return {}
        return {str(k): bool(v) for k, v in data.get("results", {}).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _probe_cache_put(key: str, ok: bool) -> None:
    results = {**_probe_cache(), key: ok}
    path = _probe_file()
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name)
        with os.fdopen(fd, "w") as f:
            json.dump({"boot_id": _boot_id(), "results": results}, f)
        os.replace(tmp, path)
    except OSError:
        pass


def _remove(cg: Path) -> bool:
    """Remove a cgroup, first stopping whatever still lives in it."""
    for _ in range(50):
        try:
            cg.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            try:
                pids = [int(p) for p in _read(cg / "cgroup.procs").split()]
            except (OSError, ValueError):
                pids = []
            _kill_all(pids)
            time.sleep(0.02)
    return False


def _sweep(own: Path) -> None:
    """Remove the empty cgroups left by launching processes that are gone."""
    for d in own.glob("insitu-*"):
        try:
            pid = int(d.name.removeprefix("insitu-"))
        except ValueError:
            continue
        if pid != os.getpid() and not psutil.pid_exists(pid):
            for sub in d.iterdir():
                if sub.is_dir():
                    _remove(sub)
            with contextlib.suppress(OSError):
                d.rmdir()


class Guard:
    """One attempt's memory limit: ``join`` in the attempt's process, ``attach`` in the
    launcher, ``check`` every :data:`SAMPLE_INTERVAL` while it runs, ``finish`` once reaped."""

    def __init__(self, limit: int | None, enforcement: str | None, cgroup: Path | None,
                 owner: MemoryEnforcer | None = None) -> None:
        self.limit = limit
        self.enforcement = enforcement
        self.cgroup = cgroup
        self._owner = owner
        self.pid: int | None = None
        self.peak = 0
        self.stopped = False
        self.allocation: int | None = None
        self.next_check = 0.0

    @property
    def active(self) -> bool:
        """Does this attempt need looking at while it runs?"""
        return self.limit is not None and not self.stopped

    def join(self) -> None:
        """In the attempt's own process, before any user code: enter the cgroup."""
        if self.cgroup is not None:
            try:
                _write(self.cgroup / "cgroup.procs", str(os.getpid()))
            except OSError as e:
                print(f"insitu: could not enter the memory cgroup {self.cgroup}: {e}",
                      file=sys.stderr)

    def attach(self, pid: int) -> None:
        self.pid = pid
        self.next_check = time.monotonic() + SAMPLE_INTERVAL

    def _pids(self) -> list[int]:
        if self.cgroup is not None:
            try:
                return [int(p) for p in _read(self.cgroup / "cgroup.procs").split()]
            except (OSError, ValueError):
                pass
        return _tree(self.pid) if self.pid else []

    def check(self) -> bool:
        """Look at the attempt; stop it if it is at its limit. True if it stopped it now.
        The watchdog looks twice as often once the attempt holds half its limit."""
        self.next_check = time.monotonic() + SAMPLE_INTERVAL
        if not self.active or self.pid is None or self.limit is None:
            return False
        if self.enforcement == "cgroup-v1" and self.cgroup is not None:
            over = _kv(self.cgroup / "memory.oom_control").get("under_oom", 0) > 0
        elif self.enforcement == "cgroup-v2" and self.cgroup is not None:
            try:
                used = int(_read(self.cgroup / "memory.current"))
            except (OSError, ValueError):
                used = 0
            self.peak = max(self.peak, used)
            over = used >= self.limit
        else:
            pids = _tree(self.pid)
            used = sum(resident(p) for p in pids)
            self.peak = max(self.peak, used)
            over = used > self.limit
            if used < self.limit // 2:
                self.next_check += SAMPLE_INTERVAL
        if over:
            self._stop()
        return over

    def _stop(self) -> None:
        pids = self._pids()
        if self.enforcement == "watchdog":
            _kill_all(pids, signal.SIGSTOP)  # hold it still while we look
            self.peak = max(self.peak, sum(resident(p) for p in pids))
        self.allocation = allocation_in_progress(pids)
        self.stopped = True
        if self.cgroup is not None and (self.cgroup / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                _write(self.cgroup / "cgroup.kill", "1")
        _kill_all(pids)
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)

    def finish(self, max_rss: int | None) -> _Outcome:
        """After the attempt's process was reaped: its peak, whether it ran out of memory,
        the allocation in progress then; the cgroup is removed."""
        if self.limit is None:
            return _Outcome(max_rss, False, None, None)
        # the peak of what the limit counts (not the RSS of pages shared with the launcher)
        peak = self.peak if self.enforcement == "watchdog" else 0
        if peak == 0 and self.enforcement == "watchdog":
            peak = max_rss or 0  # ended before the first look
        oom = self.stopped
        cg = self.cgroup
        if cg is not None:
            if self.enforcement == "cgroup-v1":
                with contextlib.suppress(OSError, ValueError):
                    peak = max(peak, int(_read(cg / "memory.max_usage_in_bytes")))
                oom = oom or _kv(cg / "memory.oom_control").get("oom_kill", 0) > 0
            else:
                with contextlib.suppress(OSError, ValueError):
                    peak = max(peak, int(_read(cg / "memory.peak")))
                oom = oom or _kv(cg / "memory.events").get("oom_kill", 0) > 0
            if not _remove(cg) and self._owner is not None:
                self._owner._stale.append(cg)
        return _Outcome(peak or None, oom, self.allocation, self.enforcement)


def note_oom(path: str, limit: int | None, peak: int | None, enforcement: str | None,
             allocation: int | None) -> None:
    """Say in the attempt's stderr log that it was stopped at its memory limit."""
    text = (f"insitu: stopped at its memory limit of {format_bytes(limit)} "
            f"(resident memory, enforced by {enforcement}); peak {format_bytes(peak)}")
    if allocation:
        text += f"; it was allocating {format_bytes(allocation)}"
    try:
        with open(path, "a") as f:
            f.write(text + "\n")
    except OSError:
        pass
