"""Schedules on a real ``insitu server`` process whose scheduler reads its time from a clock
file the test advances (``--clock-file``): a cron every minute, catch-up after downtime,
overlap, two servers on one database, DST in Europe/Berlin, and bad input."""

from __future__ import annotations

import copy
import hashlib
import io
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from remote import stop

from conftest import _free_port, cli
from insitu.server._schedules import ticks_between
from pg_fixture import databases

PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"
BERLIN = ZoneInfo("Europe/Berlin")


def _t(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _until(cond: Callable[[], Any], what: str, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@dataclass
class Proc:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        stop(self.proc)


class Deployment:
    """One database, one clock file, and the server processes started on them."""

    def __init__(self, db_url: str, home: Path) -> None:
        self.db_url, self.home = db_url, home
        self.clock = home / "clock"
        self.procs: list[Proc] = []
        init = cli(home, "server", "init", "--db", db_url)
        assert init.returncode == 0, init.stderr
        self.token = init.stdout.strip().splitlines()[-1]

    def set_clock(self, iso: str) -> None:
        tmp = self.clock.with_suffix(".tmp")
        tmp.write_text(iso)
        os.replace(tmp, self.clock)  # the server never reads half a time

    def start(self) -> Proc:
        port = _free_port()
        log = self.home / f"server-{len(self.procs)}.log"
        env = {**os.environ, "INSITU_HOME": str(self.home)}
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "insitu", "server", "--db", self.db_url, "--port",
                 str(port), "--clock-file", str(self.clock), "--schedule-interval", "0.05"],
                stdout=out, stderr=subprocess.STDOUT, env=env)
        p = Proc(url=f"http://127.0.0.1:{port}", proc=proc, log=log)
        self.procs.append(p)

        def up() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return httpx.get(f"{p.url}/api/v1/health", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        _until(up, "the server to answer")
        return p

    def client(self, p: Proc | None = None) -> httpx.Client:
        p = p or self.procs[-1]
        return httpx.Client(base_url=p.url, timeout=60,
                            headers={"Authorization": f"Bearer {self.token}"})

    def stop(self) -> None:
        for p in self.procs:
            p.stop()


@pytest.fixture(params=databases("sqlite"))
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    if request.param == "sqlite":
        db_url = f"sqlite:///{tmp_path / 'server.db'}"
    else:
        db_url = request.getfixturevalue("postgres").create_database(
            "sc_" + secrets.token_hex(6))
    d = Deployment(db_url, tmp_path)
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    """A pipeline whose one step sleeps as long as its parameter says."""
    from insitu.sdk import compile_pipeline, load_pipeline

    return dict(compile_pipeline(load_pipeline(f"{PIPELINES / 'basic.py'}:chain_of_sleeps"),
                                 {"n": 1, "seconds": 0.1}))


@pytest.fixture(scope="module")
def slow_spec() -> dict[str, Any]:
    """The same pipeline, its step sleeping ten minutes."""
    from insitu.sdk import compile_pipeline, load_pipeline

    return dict(compile_pipeline(load_pipeline(f"{PIPELINES / 'basic.py'}:chain_of_sleeps"),
                                 {"n": 1, "seconds": 600}))


P = "/api/v1/projects/default"


def _create(c: httpx.Client, spec: dict[str, Any], name: str, **kw: Any) -> dict[str, Any]:
    body = {"name": name, "spec": spec, "params": {"n": 1, "seconds": 0.1},
            "cron": "* * * * *", **kw}
    r = c.post(f"{P}/schedules", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _ticks(c: httpx.Client, name: str) -> list[dict[str, Any]]:
    r = c.get(f"{P}/schedules/{name}", params={"ticks": 1000})
    assert r.status_code == 200, r.text
    return sorted(r.json()["ticks"], key=lambda t: t["at"])


def _decided(c: httpx.Client, name: str, at: str) -> list[dict[str, Any]]:
    """Wait until tick ``at`` of ``name`` is recorded; return the ticks, oldest first."""
    want = _t(at)
    return _until(lambda: (ts := _ticks(c, name)) and ts[-1]["at"] >= want and ts,
                  f"tick {at} of {name}")


def _runs_of(c: httpx.Client, name: str) -> list[dict[str, Any]]:
    r = c.get(f"{P}/runs", params={"limit": 500})
    assert r.status_code == 200, r.text
    return [x for x in r.json()["items"] if x["labels"].get("schedule") == name]


def _fired(ticks: list[dict[str, Any]]) -> list[str]:
    return [t["time"] for t in ticks if t["state"] == "fired"]


# -- tick arithmetic (no server) -------------------------------------------------------------

def test_tick_times_in_berlin_across_both_dst_changes() -> None:
    def local(cron: str, a: str, b: str) -> list[str]:
        return [datetime.fromtimestamp(x, BERLIN).isoformat()
                for x in ticks_between(cron, "Europe/Berlin", _t(a), _t(b))]

    # spring forward: 02:30 does not exist on 29 March; it fires once, at 03:00
    assert local("30 2 * * *", "2026-03-28T12:00+01:00", "2026-03-30T12:00+02:00") == [
        "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]
    # fall back: 02:30 happens twice on 25 October; a daily job fires once
    assert local("30 2 * * *", "2026-10-24T12:00+02:00", "2026-10-26T12:00+01:00") == [
        "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]
    # an hourly job fires in both 02:00 hours: real time passes
    assert local("0 * * * *", "2026-10-25T00:30+02:00", "2026-10-25T03:30+01:00") == [
        "2026-10-25T01:00:00+02:00", "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:00:00+01:00", "2026-10-25T03:00:00+01:00"]


# -- a real server, a clock the test advances ------------------------------------------------

def test_a_cron_every_minute_fires_each_tick_once_and_pause_stops_it(
        deployment: Deployment, spec: dict[str, Any]) -> None:
    d = deployment
    d.set_clock("2026-03-02T10:00:30Z")
    d.start()
    c = d.client()
    made = _create(c, spec, "minutely", max_concurrent=20)
    assert made["next_fire"] == "2026-03-02T10:01:00+00:00" and made["last_fire"] is None
    for minute in (1, 2, 3):
        d.set_clock(f"2026-03-02T10:0{minute}:05Z")
        _decided(c, "minutely", f"2026-03-02T10:0{minute}:00+00:00")
    view = c.get(f"{P}/schedules").json()[0]
    assert view["last_fire"] == "2026-03-02T10:03:00+00:00"
    assert view["next_fire"] == "2026-03-02T10:04:00+00:00"
    # paused: ticks due meanwhile never fire, not even after resuming
    assert c.post(f"{P}/schedules/minutely/pause").json()["next_fire"] is None
    d.set_clock("2026-03-02T10:05:05Z")
    resumed = c.post(f"{P}/schedules/minutely/resume").json()
    assert resumed["paused"] is False
    assert resumed["next_fire"] == "2026-03-02T10:06:00+00:00"
    d.set_clock("2026-03-02T10:06:05Z")
    ticks = _decided(c, "minutely", "2026-03-02T10:06:00+00:00")
    assert _fired(ticks) == [f"2026-03-02T10:0{m}:00+00:00" for m in (1, 2, 3, 6)]
    runs = _runs_of(c, "minutely")
    assert sorted(r["labels"]["tick"] for r in runs) == [
        f"2026-03-02T10:0{m}:00+00:00" for m in (1, 2, 3, 6)]
    assert {r["id"] for r in runs} == {t["run_id"] for t in ticks}
    assert all(r["pipeline"] == "chain_of_sleeps" and r["project"] == "default"
               and r["labels"]["trigger"] == "cron" and r["params"]["seconds"] == 0.1
               for r in runs)
    audit = c.get("/api/v1/audit", params={"action": "schedule.pause"}).json()["items"]
    assert [a["object"] for a in audit] == ["schedule/minutely"]


def test_downtime_catch_up_latest_all_none(deployment: Deployment,
                                           spec: dict[str, Any]) -> None:
    d = deployment
    d.set_clock("2026-03-02T10:00:30Z")
    p = d.start()
    c = d.client()
    for policy in ("latest", "all", "none"):
        _create(c, spec, f"up-{policy}", catchup=policy, max_concurrent=20)
    p.stop()  # down while 10:01 .. 10:05 come due
    d.set_clock("2026-03-02T10:05:40Z")
    d.start()
    c = d.client()
    last = "2026-03-02T10:05:00+00:00"
    latest = _decided(c, "up-latest", last)
    assert _fired(latest) == [last]
    assert [t["state"] for t in latest] == ["skipped"] * 4 + ["fired"]
    assert all("missed" in t["reason"] and "catchup=latest" in t["reason"]
               for t in latest[:4])
    every = _decided(c, "up-all", last)
    assert _fired(every) == [f"2026-03-02T10:0{m}:00+00:00" for m in range(1, 6)]
    none = _decided(c, "up-none", last)
    assert _fired(none) == [] and len(none) == 5
    assert all("catchup=none" in t["reason"] for t in none)
    assert [len(_runs_of(c, f"up-{x}")) for x in ("latest", "all", "none")] == [1, 5, 0]
    # back on time, each fires its next tick
    d.set_clock("2026-03-02T10:06:05Z")
    for policy in ("latest", "all", "none"):
        ticks = _decided(c, f"up-{policy}", "2026-03-02T10:06:00+00:00")
        assert ticks[-1]["state"] == "fired"


def test_a_tick_is_skipped_while_the_previous_run_is_going(
        deployment: Deployment, slow_spec: dict[str, Any]) -> None:
    d = deployment
    d.set_clock("2026-03-02T10:00:30Z")
    d.start()
    c = d.client()
    # the step sleeps 10 minutes: the run is still going at the next tick
    body = {"name": "slow", "spec": slow_spec, "params": {"n": 1, "seconds": 600},
            "cron": "* * * * *"}
    assert c.post(f"{P}/schedules", json=body).status_code == 201
    d.set_clock("2026-03-02T10:01:05Z")
    first = _decided(c, "slow", "2026-03-02T10:01:00+00:00")[-1]
    assert first["state"] == "fired"
    d.set_clock("2026-03-02T10:02:05Z")
    second = _decided(c, "slow", "2026-03-02T10:02:00+00:00")[-1]
    assert second["state"] == "skipped" and second["run_id"] is None
    assert "overlap" in second["reason"] and first["run_id"] in second["reason"]
    assert "max_concurrent=1" in second["reason"]
    r = c.post(f"{P}/runs/{first['run_id']}/cancel")
    assert r.status_code == 200, r.text
    _until(lambda: c.get(f"{P}/runs/{first['run_id']}").json()["state"] == "cancelled",
           "the first run to be cancelled")
    d.set_clock("2026-03-02T10:03:05Z")
    third = _decided(c, "slow", "2026-03-02T10:03:00+00:00")[-1]
    assert third["state"] == "fired" and third["run_id"] != first["run_id"]
    c.post(f"{P}/runs/{third['run_id']}/cancel")


def test_two_servers_on_one_database_fire_each_tick_once(
        postgres: Any, tmp_path: Path, spec: dict[str, Any]) -> None:
    d = Deployment(postgres.create_database("sc2_" + secrets.token_hex(6)), tmp_path)
    try:
        d.set_clock("2026-03-02T10:00:30Z")
        a, b = d.start(), d.start()
        ca, cb = d.client(a), d.client(b)
        names = [f"twin{i}" for i in range(8)]
        for i, name in enumerate(names):
            _create(ca if i % 2 else cb, spec, name, max_concurrent=20)
        minutes = (1, 2, 3, 4)
        for m in minutes:
            d.set_clock(f"2026-03-02T10:0{m}:02Z")
            for name in names:
                _decided(ca, name, f"2026-03-02T10:0{m}:00+00:00")
        assert a.proc.poll() is None and b.proc.poll() is None
        by: dict[str, int] = {}
        for name in names:
            ticks = _ticks(cb, name)
            assert _fired(ticks) == [f"2026-03-02T10:0{m}:00+00:00" for m in minutes]
            runs = _runs_of(ca, name)
            assert len(runs) == len(minutes)
            assert sorted(r["labels"]["tick"] for r in runs) == _fired(ticks)
            for t in ticks:
                by[t["by"]] = by.get(t["by"], 0) + 1
        assert sum(by.values()) == len(names) * len(minutes)
        lost = sum(p.log.read_text().count("already recorded") for p in (a, b))
        print(f"ticks fired per server: {by}; ticks found already recorded: {lost}")
    finally:
        d.stop()


def test_daily_and_hourly_schedules_across_dst_in_berlin(deployment: Deployment,
                                                         spec: dict[str, Any]) -> None:
    d = deployment
    d.set_clock("2026-03-28T12:00:00Z")
    d.start()
    c = d.client()
    made = _create(c, spec, "spring", cron="30 2 * * *", timezone="Europe/Berlin",
                   max_concurrent=20)
    assert made["next_fire"] == "2026-03-29T03:00:00+02:00"  # 02:30 does not exist
    d.set_clock("2026-03-29T01:00:05Z")
    assert _fired(_decided(c, "spring", "2026-03-29T03:00:00+02:00")) == [
        "2026-03-29T03:00:00+02:00"]
    assert c.delete(f"{P}/schedules/spring").status_code == 204

    d.set_clock("2026-10-24T22:30:00Z")  # 00:30 CEST on the day clocks go back
    daily = _create(c, spec, "fall", cron="30 2 * * *", timezone="Europe/Berlin",
                    max_concurrent=20)
    assert daily["next_fire"] == "2026-10-25T02:30:00+02:00"
    _create(c, spec, "fall-hourly", cron="0 * * * *", timezone="Europe/Berlin",
            catchup="all", max_concurrent=100)
    d.set_clock("2026-10-25T00:30:05Z")  # 02:30 CEST
    _decided(c, "fall", "2026-10-25T02:30:00+02:00")
    view = c.get(f"{P}/schedules/fall").json()
    assert view["next_fire"] == "2026-10-26T02:30:00+01:00"  # not 02:30 CET the same day
    d.set_clock("2026-10-26T01:30:05Z")  # 02:30 CET the next day
    assert _fired(_decided(c, "fall", "2026-10-26T02:30:00+01:00")) == [
        "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]
    hourly = _fired(_decided(c, "fall-hourly", "2026-10-26T02:00:00+01:00"))
    assert hourly[:4] == ["2026-10-25T01:00:00+02:00", "2026-10-25T02:00:00+02:00",
                          "2026-10-25T02:00:00+01:00", "2026-10-25T03:00:00+01:00"]
    assert len(hourly) == 4 + 23  # 04:00 on the 25th up to 02:00 on the 26th


def _package(files: dict[str, bytes]) -> tuple[bytes, str]:
    """A code package's zip bytes and digest (hex)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return buf.getvalue(), hashlib.sha256(buf.getvalue()).hexdigest()


def _packaged(spec: dict[str, Any], file: str) -> dict[str, Any]:
    """``spec`` with its refs relative to a package holding ``file``, as the client sends."""
    out = copy.deepcopy(spec)
    for ref in [out["source"], *(s["function"] for s in out["steps"])]:
        if ref.get("file"):
            ref["file"] = file
    return out


def test_a_scheduled_run_from_a_code_package_executes_on_the_server(
        tmp_path: Path, spec: dict[str, Any]) -> None:
    """A tick's run is executed by the server's supervisor, with the code package's files."""
    data, digest = _package({"basic.py": (PIPELINES / "basic.py").read_bytes()})
    d = Deployment(f"sqlite:///{tmp_path / 'server.db'}", tmp_path)
    try:
        d.set_clock("2026-03-02T10:00:30Z")
        d.start()
        c = d.client()
        r = c.put(f"{P}/packages/{digest}", content=data,
                  headers={"Content-Type": "application/zip"})
        assert r.status_code == 201, r.text
        made = _create(c, _packaged(spec, "basic.py"), "packaged", package=digest)
        assert made["package"] == f"sha256:{digest}"  # stored as the package's id
        d.set_clock("2026-03-02T10:01:05Z")
        tick = _decided(c, "packaged", "2026-03-02T10:01:00+00:00")[-1]
        assert tick["state"] == "fired"
        run = _until(lambda: (v := c.get(f"{P}/runs/{tick['run_id']}").json())["state"]
                     in ("succeeded", "failed", "cancelled") and v, "the run to end",
                     timeout=300)
        assert run["state"] == "succeeded", run
        assert run["labels"]["package"] == f"sha256:{digest}"
    finally:
        d.stop()


# -- bad input, backfill and the command line ------------------------------------------------

def test_bad_cron_and_time_zone_and_the_cli(tmp_path: Path, spec: dict[str, Any]) -> None:
    d = Deployment(f"sqlite:///{tmp_path / 'server.db'}", tmp_path)
    try:
        d.set_clock("2026-03-02T10:00:30Z")
        p = d.start()
        c = d.client()
        base = {"name": "bad", "spec": spec, "params": {}, "cron": "* * * * *"}
        for field, value, names, fix in (
                ("cron", "61 * * * *", "'61 * * * *'", "0 3 * * *"),
                ("cron", "0 3 * *", "'0 3 * *'", "five fields"),
                ("cron", "0 0 31 2 *", "no date matches it", "0 3 * * *"),
                ("timezone", "Europe/Berln", "'Europe/Berln'", "did you mean 'Europe/Berlin'"),
                ("timezone", "Mars/Olympus", "'Mars/Olympus'", "Europe/Berlin"),
                ("catchup", "some", "'some'", "latest"),
                ("max_concurrent", 0, "max_concurrent=0", "1")):
            r = c.post(f"{P}/schedules", json={**base, field: value})
            assert r.status_code == 400, r.text
            assert r.headers["content-type"] == "application/problem+json"
            body = r.json()
            assert names in body["detail"] and fix in body["hint"], body
        # its code package is checked as a submitted run's is
        data, digest = _package({"basic.py": (PIPELINES / "basic.py").read_bytes()})
        r = c.put(f"{P}/packages/{digest}", content=data,
                  headers={"Content-Type": "application/zip"})
        assert r.status_code == 201, r.text
        for body, status, names, fix in (
                ({"package": "sha256:" + "0" * 64}, 404,
                 f"no code package sha256:{'0' * 64}", "upload it first"),
                ({"package": "not-a-digest"}, 400, "'not-a-digest' is not a package digest",
                 "64 lowercase hex digits"),
                ({"spec": _packaged(spec, "basic.py")}, 400,
                 "names the file 'basic.py' relative to a code package, but the submission "
                 "has no package", "upload the package"),
                ({"spec": _packaged(spec, "other.py"), "package": digest}, 400,
                 f"needs the file 'other.py', which is not in code package sha256:{digest} "
                 "(it holds: basic.py)", "under the pipeline's folder")):
            r = c.post(f"{P}/schedules", json={**base, "params": {"n": 1}, **body})
            assert r.status_code == status, r.text
            assert r.headers["content-type"] == "application/problem+json"
            got = r.json()
            assert names in got["detail"] and fix in got["hint"], got
        assert c.get(f"{P}/schedules").json() == []  # nothing half-written

        env = {**os.environ, "INSITU_HOME": str(tmp_path), "INSITU_SERVER": p.url,
               "INSITU_TOKEN": d.token, "COLUMNS": "200"}

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "insitu", "schedule", *args],
                                  capture_output=True, text=True, timeout=180, env=env)

        code = tmp_path / "code"  # sent as a code package, then removed here
        code.mkdir()
        shutil.copy(PIPELINES / "basic.py", code / "basic.py")
        target = f"{code / 'basic.py'}:chain_of_sleeps"
        bad = run("create", "x", target, "--cron", "61 * * * *")
        assert bad.returncode == 2
        assert "error: cron expression '61 * * * *' is not valid" in bad.stderr
        assert "fix: give five fields" in bad.stderr
        bad = run("create", "x", target, "--cron", "0 3 * * *", "--timezone", "Europe/Berln")
        assert bad.returncode == 2 and "'Europe/Berln' is not an IANA" in bad.stderr
        assert "did you mean 'Europe/Berlin'" in bad.stderr

        made = run("create", "nightly", target, "--cron", "0 3 * * *", "--timezone",
                   "Europe/Berlin", "-p", "seconds=0.2", "-p", "n=1", "--max-concurrent",
                   "2")
        assert made.returncode == 0, made.stderr
        assert "next run 2026-03-03 03:00" in made.stdout
        sent = re.search(r"code: 1 file from (.+) \(.+, sha256:([0-9a-f]{12})\)", made.stdout)
        assert sent and sent.group(1) == str(code), made.stdout
        stored = c.get(f"{P}/schedules/nightly").json()
        assert stored["package"].startswith(f"sha256:{sent.group(2)}"), stored
        again = run("create", "nightly", target, "--cron", "0 3 * * *")
        assert again.returncode == 2 and "has a schedule 'nightly' already" in again.stderr
        shutil.rmtree(code)  # the runs use the package's copy of the code
        ls = run("ls")
        assert re.search(r"nightly\s+chain_of_sleeps\s+0 3 \* \* \*\s+Europe/Berlin\s+latest"
                         r"\s+2\s+active\s+2026-03-03 03:00", ls.stdout), ls.stdout
        assert run("pause", "nightly").returncode == 0
        assert "paused" in run("ls").stdout
        assert run("resume", "nightly").returncode == 0
        back = run("backfill", "nightly", "--from", "2026-02-26", "--to", "2026-03-01T12:00")
        assert back.returncode == 0, back.stderr
        assert "4 run(s) created; 0 tick(s)" in back.stdout, back.stdout
        again = run("backfill", "nightly", "--from", "2026-02-27", "--to", "2026-03-02T09:00")
        assert "1 run(s) created; 3 tick(s)" in again.stdout, again.stdout
        future = run("backfill", "nightly", "--from", "2026-03-01", "--to", "2026-04-01")
        assert future.returncode == 2 and "reaches into the future" in future.stderr
        runs = _runs_of(c, "nightly")
        assert sorted(r["labels"]["tick"] for r in runs) == [
            f"2026-0{m}-{day}T02:00:00+00:00" for m, day in
            ((2, 26), (2, 27), (2, 28), (3, "01"), (3, "02"))]
        assert all(r["labels"]["trigger"] == "backfill" and r["params"]["seconds"] == 0.2
                   and r["labels"]["package"] == stored["package"] for r in runs)
        paged: list[str] = []  # the runs list's schedule filter, page by page
        cursor = None
        while True:
            page = c.get(f"{P}/runs", params={"schedule": "nightly", "limit": 2,
                                               **({"cursor": cursor} if cursor else {})}).json()
            paged += [r["id"] for r in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert paged == [r["id"] for r in sorted(runs, key=lambda r: (r["created_at"], r["id"]),
                                                 reverse=True)]
        assert c.get(f"{P}/runs", params={"schedule": "other"}).json()["items"] == []

        def ended() -> list[dict[str, Any]] | None:
            rs = _runs_of(c, "nightly")
            return rs if all(r["state"] in ("succeeded", "failed", "cancelled")
                             for r in rs) else None

        done = _until(ended, "the backfilled runs to end", timeout=600)
        assert [r["state"] for r in done] == ["succeeded"] * 5, done
        show = run("show", "nightly")
        assert show.returncode == 0 and "backfill" in show.stdout
        assert stored["package"] in show.stdout, show.stdout
        assert run("delete", "nightly").returncode == 0
        gone = run("show", "nightly")
        assert gone.returncode == 2 and "has no schedule 'nightly'" in gone.stderr
        assert len(_runs_of(c, "nightly")) == 5  # its runs stay
    finally:
        d.stop()
