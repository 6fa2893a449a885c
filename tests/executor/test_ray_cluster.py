"""The local Ray cluster: independent of the user's Ray state, stopped completely and only
by record (never by a pattern), with clear messages for bad input."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from insitu.errors import UserError

ray = pytest.importorskip("ray")

from insitu.executor._ray import RayExecutor  # noqa: E402
from insitu.executor._ray_cluster import ClusterError, LocalRayCluster  # noqa: E402
from insitu.testing.executor_conformance import request, wait_all  # noqa: E402

STEPS = Path(__file__).parents[1] / "pipelines" / "memory_steps.py"


def holders(base: Path) -> list[int]:
    """PIDs of the processes (of any name) that hold a file, or work, under ``base``."""
    out = []
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        if pid == os.getpid():
            continue
        try:
            links = [os.readlink(f"/proc/{pid}/cwd")]
            links += [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        if any(link.startswith(str(base) + "/") or link == str(base) for link in links):
            out.append(pid)
    return out


def test_a_cluster_with_a_stray_token_runs_and_down_stops_all_of_it_and_nothing_else(
        cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base = Path(tempfile.mkdtemp(prefix="insitu-rc-"))  # short: Ray's socket paths are limited
    home = base / "home"
    (home / ".ray").mkdir(parents=True)
    token = home / ".ray" / "auth_token"
    token.write_text("a-token-left-by-another-ray-0123456789abcdef")
    c = LocalRayCluster(base / "c")
    # a bystander that looks like one of Ray's agents, run from the cluster's own folder
    # and naming it: a pattern would select it; a record does not
    (base / "c").mkdir()
    bystander = subprocess.Popen(
        ["bash", "-c", f'exec -a "ray::DashboardAgent {c.temp_dir}" sleep 600'],
        env={**os.environ, "INSITU_DATA_DIR": str(base / "c" / "data" / "node-0")})
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("HOME", str(home))
            c.up(2, cpus_per_node=1, memory_per_node=2 * 1024**3)
            ex = RayExecutor(c.address)
            try:  # memory limits on a Ray node: resident memory, as on the local executor
                ex.launch(request(tmp_path, ex, "big", "reserve_and_hold",
                                  {"resident_mib": 400, "reserve_gib": 4, "seconds": 1.0},
                                  node="node-1", memory_limit=512 * 1024**2,
                                  function={"module": None, "file": str(STEPS),
                                            "qualname": "reserve_and_hold", "fingerprint": "x"}))
                got = wait_all(ex, {"big"}, timeout=180)["big"]
            finally:
                ex.close()
                ray.shutdown()
            assert got.result is not None and got.result["ok"], \
                (tmp_path / "logs" / "big.err").read_text()
            assert got.memory_enforcement in ("cgroup-v1", "cgroup-v2", "watchdog")
            assert not got.oom_killed
            assert holders(base / "c"), "the cluster's processes hold files under its folder"
            r = cli("cluster", "down", "--base-dir", str(base / "c"), env={"HOME": str(home)})
            assert r.returncode == 0 and "stopped" in r.stdout, r.stdout + r.stderr
            deadline = time.time() + 30
            while [p for p in holders(base / "c") if p != bystander.pid]:
                assert time.time() < deadline, \
                    f"left behind: {holders(base / 'c')} (bystander {bystander.pid})"
                time.sleep(0.2)
            assert bystander.poll() is None, "down stopped a process the cluster did not start"
            again = cli("cluster", "down", "--base-dir", str(base / "c"),
                        env={"HOME": str(home)})
            assert again.returncode == 0 and "nothing to stop" in again.stdout
            assert token.read_text().startswith("a-token-left"), "the user's token is kept"
    finally:
        bystander.kill()
        bystander.wait()
        c.down()
        shutil.rmtree(base, ignore_errors=True)


def test_an_empty_base_dir_is_refused(cli) -> None:  # type: ignore[no-untyped-def]
    r = cli("cluster", "down", "--base-dir", "")
    assert r.returncode != 0 and "--base-dir is empty" in r.stderr
    assert "Traceback" not in r.stderr
    with pytest.raises(ClusterError, match="base directory is empty"):
        LocalRayCluster("")


def test_a_malformed_cluster_record_is_one_clear_message(
        cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "cluster.json").write_text('{"address": 1, ')
    with pytest.raises(UserError, match="cannot be read"):
        LocalRayCluster.load(tmp_path)
    for cmd in ("down", "status"):
        r = cli("cluster", cmd, "--base-dir", str(tmp_path))
        assert r.returncode != 0 and "cluster.json cannot be read" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and "delete it" in r.stderr
    (tmp_path / "cluster.json").write_text('{"address": "x", "nodes": [{"bogus": 1}]}')
    with pytest.raises(UserError, match="cannot be read"):
        LocalRayCluster.load(tmp_path)


def test_up_refuses_a_folder_it_did_not_make() -> None:
    base = Path(tempfile.mkdtemp(prefix="insitu-rf-"))
    try:
        (base / "ray").mkdir()
        (base / "ray" / "keep.txt").write_text("the user's")
        with pytest.raises(ClusterError, match="was not made by"):
            LocalRayCluster(base).up(1)
        assert (base / "ray" / "keep.txt").exists()
    finally:
        shutil.rmtree(base)


def test_a_base_dir_too_long_for_rays_sockets_is_refused(tmp_path: Path) -> None:
    base = tmp_path / ("x" * 60)
    with pytest.raises(ClusterError, match="too long for Ray's socket paths"):
        LocalRayCluster(base).up(1)
    assert not (base / "ray").exists()
