"""The server under load, SQLite and PostgreSQL side by side in one run:

(a) API latency of list runs (a page of 50, first pages and pages 10,000 runs deep) and get
    one run, with 50 concurrent clients, on a database holding 100,000 runs. Each client sends
    a request, waits for the answer, pauses, and sends the next: one row per mean pause
    (``--think``, exponential pauses). A pause of 0 keeps the server saturated: its latencies
    are then mostly time queued behind the other clients (p50 ~ clients / throughput) and its
    requests per second are the server's capacity. ``*_cpu_ms`` is the server's own CPU time
    per request, which depends little on what else the machine runs.
(b) submissions per second sustained (a trivial 3-step pipeline in a code package, 20
    clients sending as fast as they are answered, on a server that only accepts:
    ``--max-engines 0``), every accepted run checked to be in the database;
(c) time from submit to the first step running, one run at a time (the first attempt's
    start, as the engine records it): on an idle server (submitted 3 s after the last run
    ended), and back to back (submitted as soon as the last ended, when the engine the server
    starts ahead for the next run is still starting);
(d) the server's resident memory idle and under load.

    python benchmarks/server.py [--runs 100000] [--clients 50] [--think 0,100,250,1000]
                                [--seconds 20] [--workers 1] [--db both]

The load comes from wrk (Debian's package: ``apt-get install wrk``), whose C threads cost the
machine little next to the server (a Python HTTP client costs more CPU per request than the
server does, and would measure itself). PostgreSQL comes from Debian's package
(scripts/test-deps), started as a throw-away cluster as the tests do, and analysed after it is
filled (as a database that grew to that size would be). Prints tables and writes
benchmarks/results/server.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent / "tests" / "server"))


def fill(db_url: str, n: int) -> list[str]:
    from insitu.store import RunRecord, open_store

    store = open_store(db_url)
    t0 = time.time() - n
    ids = []
    batch = []
    for i in range(n):
        rid = f"b{i:011d}"
        ids.append(rid)
        batch.append(RunRecord(id=rid, pipeline=f"pipe{i % 7}", state=("succeeded", "failed",
                                                                      "running")[i % 3],
                               spec={"name": "p", "steps": []}, params={"i": i},
                               created_at=t0 + i, project="bench"))
        if len(batch) == 2000:
            store.put(*batch)
            batch = []
    if batch:
        store.put(*batch)
    store.close()
    return ids


def rss_mb(pid: int) -> float:
    import psutil

    return float(psutil.Process(pid).memory_info().rss / 2**20)


def cpu_s(pid: int) -> float:
    import psutil

    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


WRK_SCRIPT = HERE / "wrk_load.lua"


def wrk(url: str, token: str, paths: list[str], clients: int, seconds: float,
        think_ms: float = 0.0, body: bytes | None = None) -> dict[str, Any]:
    """Load from ``clients`` connections of wrk (its threads written in C, so the load
    costs the machine little next to the server): each sends a request, waits for the
    answer, pauses ``think_ms`` on average (a random, exponential pause; none when 0: then
    they keep the server saturated) and sends the next. GETs ``paths`` in turn, or POSTs
    ``body`` to them."""
    import subprocess

    exe = shutil.which("wrk")
    if exe is None:
        raise SystemExit("this benchmark drives the server with wrk: install it with "
                         "`apt-get install wrk` (Debian's package)")
    with tempfile.TemporaryDirectory(prefix="insitu-wrk-") as tmp:
        (Path(tmp) / "paths").write_text("\n".join(paths) + "\n")
        env = {**os.environ, "WRK_PATHS": f"{tmp}/paths", "WRK_TOKEN": token,
               "WRK_THINK_MS": str(think_ms)}
        if body is not None:
            (Path(tmp) / "body").write_bytes(body)
            env["WRK_BODY"] = f"{tmp}/body"
        threads = min(clients, 2)
        r = subprocess.run([exe, f"-t{threads}", f"-c{clients}", f"-d{seconds:g}s",
                            "--timeout", "60s", "-s", str(WRK_SCRIPT), url],
                           env=env, capture_output=True, text=True, check=False)
    line = next((x for x in r.stdout.splitlines() if x.startswith("JSON ")), None)
    if r.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({r.returncode}): {r.stdout[-2000:]} {r.stderr[-2000:]}")
    out: dict[str, Any] = json.loads(line[5:])
    out["statuses"] = {int(k): v for k, v in out["statuses"].items()}
    return out


def bench(kind: str, db_url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """(a) and (d): a row per pause between a client's requests."""
    from conftest import start_server, stop_server

    home = Path(tempfile.mkdtemp(prefix=f"insitu-bench-{kind}-"))
    t0 = time.perf_counter()
    ids = fill(db_url, args.runs)
    fill_s = time.perf_counter() - t0
    if kind == "postgresql":  # statistics, as a database that grew to this size has them
        import sqlalchemy as sa

        engine = sa.create_engine(db_url)
        with engine.connect() as conn:
            conn.execute(sa.text("ANALYZE"))
            conn.commit()
        engine.dispose()
    s = start_server(db_url, home, *(["--workers", str(args.workers)] if args.workers > 1
                                     else []))
    try:
        s.admin.post("/api/v1/projects", json={"name": "bench"})
        idle = rss_mb(s.proc.pid)
        rng = random.Random(42)
        # list: first pages, and pages deep in the list (a cursor from a real walk)
        deep = s.admin.get("/api/v1/projects/bench/runs", params={"limit": 500}).json()
        for _ in range(min(20, args.runs // 500 - 2)):  # about 10,000 runs deep at most
            deep = s.admin.get("/api/v1/projects/bench/runs",
                               params={"limit": 500, "cursor": deep["next_cursor"]}).json()
        lists = ["/api/v1/projects/bench/runs?limit=50",
                 f"/api/v1/projects/bench/runs?limit=50&cursor={deep['next_cursor']}"]
        gets = [f"/api/v1/projects/bench/runs/{rng.choice(ids)}" for _ in range(5000)]
        rows: list[dict[str, Any]] = []
        for think in args.think:
            row: dict[str, Any] = {"db": kind, "runs": args.runs, "workers": args.workers,
                                   "clients": args.clients, "think_ms": think,
                                   "fill_s": round(fill_s, 1), "rss_idle_mb": round(idle, 1)}
            for name, paths in (("list", lists), ("get", gets)):
                wrk(s.url, s.admin_token, paths, args.clients, 3, think)  # warm up
                cpu0 = cpu_s(s.proc.pid)
                got = wrk(s.url, s.admin_token, paths, args.clients, args.seconds, think)
                bad = sum(n for st, n in got["statuses"].items() if st != 200)
                if bad or got["socket_errors"]:
                    raise RuntimeError(f"{name}: answers other than 200: {got}")
                # the server's own CPU time per request (all its processes): what a request
                # costs, whatever else the machine is doing
                row[f"{name}_cpu_ms"] = round((cpu_s(s.proc.pid) - cpu0) / got["requests"]
                                              * 1000, 2)
                row[f"{name}_p50_ms"] = round(got["p50_ms"], 1)
                row[f"{name}_p99_ms"] = round(got["p99_ms"], 1)
                row[f"{name}_rps"] = round(got["requests"] / got["duration_s"], 1)
            row["rss_loaded_mb"] = round(rss_mb(s.proc.pid), 1)
            rows.append(row)
            print("  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
        return rows
    finally:
        stop_server(s)
        shutil.rmtree(home, ignore_errors=True)


TRIVIAL = """\
import insitu


@insitu.step
def a() -> int:
    return 1


@insitu.step
def b(x: int) -> int:
    return x + 1


@insitu.step
def c(y: int) -> int:
    return y * 2


@insitu.pipeline
def trivial():
    c(b(a()))
"""


def _submit_setup(kind: str, db_url: str, *args: str) -> tuple[object, str, str, dict[str,
                                                                                       object],
                                                                 str, Path]:
    from remote import build_package, compile_spec, launch

    from conftest import cli

    home = Path(tempfile.mkdtemp(prefix=f"insitu-bench-submit-{kind}-"))
    init = cli(home, "server", "init", "--db", db_url)
    if init.returncode != 0:
        raise RuntimeError(init.stderr)
    token = init.stdout.strip().splitlines()[-1]
    root = home / "proj"
    root.mkdir()
    (root / "trivial.py").write_text(TRIVIAL)
    spec = compile_spec(home / "client", root / "trivial.py")
    data, digest = build_package(root)
    proc, url = launch(db_url, home, *args)
    import httpx

    r = httpx.put(f"{url}/api/v1/projects/default/packages/{digest}", content=data,
                  headers={"Authorization": f"Bearer {token}"})
    r.raise_for_status()
    return proc, url, token, spec, digest, home


def _stop(proc: object, home: Path) -> None:
    import subprocess

    assert isinstance(proc, subprocess.Popen)
    proc.terminate()
    proc.wait(timeout=60)
    shutil.rmtree(home, ignore_errors=True)


def bench_submit(kind: str, db_url: str, args: argparse.Namespace) -> dict[str, Any]:
    """(b): submissions per second, sustained for ``args.seconds`` by ``args.submitters``
    clients sending as fast as they are answered, on a server that only accepts
    (``--max-engines 0``); every accepted run is then looked for in the database."""
    from insitu.store import open_store

    proc, url, token, spec, digest, home = _submit_setup(kind, db_url, "--max-engines", "0")
    try:
        body = json.dumps({"spec": spec, "package": digest, "no_cache": True}).encode()
        paths = ["/api/v1/projects/default/runs"]
        wrk(url, token, paths, args.submitters, 3, body=body)  # warm up
        store = open_store(db_url)
        try:
            before = {r.id for r in store.list_runs(project="default", with_spec=False)}
            got = wrk(url, token, paths, args.submitters, args.seconds, body=body)
            after = {r.id for r in store.list_runs(project="default", with_spec=False)}
        finally:
            store.close()
        accepted = got["statuses"].get(201, 0)
        refused = sum(n for st, n in got["statuses"].items() if st != 201)
        stored = len(after - before)
        return {"submit_per_s": round(accepted / got["duration_s"], 1),
                "submit_accepted": accepted, "submit_refused": refused,
                "submit_socket_errors": got["socket_errors"],
                # accepted (201) but not in the database; a run in the database that no
                # 201 reported would be one answered after wrk stopped waiting
                "submit_lost": max(0, accepted - stored), "submit_stored": stored,
                "submit_p50_ms": round(got["p50_ms"], 1),
                "submit_p99_ms": round(got["p99_ms"], 1)}
    finally:
        _stop(proc, home)


def bench_first_step(kind: str, db_url: str, args: argparse.Namespace) -> dict[str, object]:
    """(c): milliseconds from submitting to the first step's attempt starting, one run at a
    time: on an idle server (each submission ``args.idle_s`` after the last run ended, so
    the server has its engine started ahead again), and back to back (each submitted as soon
    as the last ended)."""
    import httpx

    from insitu.store import open_store

    proc, url, token, spec, digest, home = _submit_setup(kind, db_url)
    store = open_store(db_url)
    out: dict[str, object] = {}
    try:
        with httpx.Client(base_url=url, timeout=60,
                          headers={"Authorization": f"Bearer {token}"}) as c:
            for name, pause in (("first_step", args.idle_s), ("first_step_burst", 0.0)):
                waits: list[float] = []
                for _ in range(args.first_step_runs):
                    time.sleep(pause)
                    t0 = time.time()
                    r = c.post("/api/v1/projects/default/runs",
                               json={"spec": spec, "package": digest, "no_cache": True})
                    r.raise_for_status()
                    rid = r.json()["id"]
                    deadline = time.time() + 120
                    while True:
                        run = store.get_run(rid)
                        if run.state in ("succeeded", "failed", "cancelled"):
                            break
                        if time.time() > deadline:
                            raise RuntimeError(f"run {rid} did not end in 120 s")
                        time.sleep(0.01)
                    starts = [a.started_at for a in store.list_attempts(rid) if a.started_at]
                    if run.state != "succeeded" or not starts:
                        raise RuntimeError(f"run {rid} ended {run.state}")
                    waits.append((min(starts) - t0) * 1000)
                out[f"{name}_p50_ms"] = round(statistics.median(waits), 1)
                out[f"{name}_max_ms"] = round(max(waits), 1)
    finally:
        store.close()
        _stop(proc, home)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--think", type=lambda v: [float(x) for x in v.split(",")],
                    default=[0.0, 100.0, 250.0, 1000.0],
                    help="mean pauses (ms) between a client's requests, one row each "
                         "(0: each sends again as soon as it is answered)")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each load")
    ap.add_argument("--submitters", type=int, default=20, help="clients submitting runs")
    ap.add_argument("--first-step-runs", type=int, default=10)
    ap.add_argument("--idle-s", type=float, default=3.0,
                    help="(c): seconds between a run's end and the next submission")
    ap.add_argument("--only-submit", action="store_true",
                    help="measure only (b) and (c), not the API latency on a full database")
    ap.add_argument("--workers", type=int, default=1, help="server processes (--workers)")
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    args = ap.parse_args()
    import pg_fixture

    def one(kind: str, make_url: Callable[[], str]) -> tuple[list[dict[str, Any]],
                                                             dict[str, Any]]:
        lat = [] if args.only_submit else bench(kind, make_url(), args)
        sub: dict[str, Any] = {"db": kind, "workers": args.workers}
        sub.update(bench_submit(kind, make_url(), args))
        sub.update(bench_first_step(kind, make_url(), args))
        print("  ".join(f"{k}={v}" for k, v in sub.items()), flush=True)
        return lat, sub

    latency: list[dict[str, Any]] = []
    submit: list[dict[str, Any]] = []
    if args.db in ("sqlite", "both"):
        home = Path(tempfile.mkdtemp(prefix="insitu-bench-sqlite-"))
        try:
            n = iter(range(100))
            lat, sub = one("sqlite", lambda: f"sqlite:///{home / f'server{next(n)}.db'}")
            latency += lat
            submit.append(sub)
        finally:
            shutil.rmtree(home, ignore_errors=True)
    if args.db in ("postgresql", "both"):
        pg = pg_fixture._Cluster(pg_fixture._bin_dir())  # type: ignore[arg-type]
        pg.start()
        try:
            lat, sub = one("postgresql",
                           lambda: pg.create_database("b_" + secrets.token_hex(4)))
            latency += lat
            submit.append(sub)
        finally:
            pg.stop()
    print(f"\n(a, d) API latency: {args.clients} clients, each pausing think_ms on average "
          f"between its requests; {args.runs} runs in the database; {args.workers} server "
          f"worker(s); {os.cpu_count()} CPUs; {args.seconds:g} s per load")
    cols = ["db", "think_ms", "list_p50_ms", "list_p99_ms", "list_rps", "list_cpu_ms",
            "get_p50_ms", "get_p99_ms", "get_rps", "get_cpu_ms", "rss_idle_mb",
            "rss_loaded_mb"]
    _table(cols, latency)
    print(f"\n(b) submissions sustained by {args.submitters} clients for {args.seconds:g} s; "
          "(c) submit to first step running: on an idle server, and back to back")
    _table(["db", "submit_per_s", "submit_accepted", "submit_refused", "submit_lost",
            "submit_p50_ms", "submit_p99_ms", "first_step_p50_ms", "first_step_max_ms",
            "first_step_burst_p50_ms"],
           submit)
    name = "server-submit.json" if args.only_submit else "server.json"
    out = HERE / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"latency": latency, "submit": submit,
                               "args": {k: v for k, v in vars(args).items()}}, indent=2))
    print(f"wrote {out}")


def _table(cols: list[str], rows: list[dict[str, Any]]) -> None:
    print("  ".join(f"{c:>13}" for c in cols))
    for r in rows:
        print("  ".join(f"{str(r.get(c, '-')):>13}" for c in cols))


if __name__ == "__main__":
    main()
