"""The server's API under load: list runs (a page of 50) and get one run, with many concurrent
clients, on a database holding many runs, SQLite and PostgreSQL side by side in one run; and
the server's resident memory idle and under that load.

    python benchmarks/server.py [--runs 100000] [--clients 50] [--requests 4000] [--workers 1]

PostgreSQL comes from Debian's package (scripts/test-deps), started as a throw-away cluster as
the tests do, and analysed after it is filled (as a database that grew to that size would be).
Prints a table and writes benchmarks/results/server.json. Beside the latencies seen by the
clients (which, with 50 clients each sending its next request as soon as the last is answered,
are mostly time queued behind the others: p50 ~ clients / throughput), ``*_cpu_ms`` is the
server's own CPU time per request, which depends little on what else the machine runs.

Also, per database: (b) submissions per second sustained (a trivial 3-step pipeline in a code
package, many concurrent clients, on a server that only accepts: ``--max-engines 0``), every
accepted run checked to be in the database; (c) time from submit to the first step running
on an idle server, one run at a time (the first attempt's start, as the engine records it).
"""

from __future__ import annotations

import argparse
import asyncio
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


async def load(url: str, token: str, paths: list[str], clients: int) -> list[float]:
    import httpx

    lat: list[float] = []
    queue = list(paths)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"},
                                 timeout=120, limits=limits) as c:
        async def worker() -> None:
            while queue:
                p = queue.pop()
                t0 = time.perf_counter()
                r = await c.get(p)
                lat.append((time.perf_counter() - t0) * 1000)
                if r.status_code != 200:
                    raise RuntimeError(f"{p}: {r.status_code} {r.text[:200]}")

        await asyncio.gather(*(worker() for _ in range(clients)))
    return lat


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * q))]


def bench(kind: str, db_url: str, args: argparse.Namespace) -> dict[str, object]:
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
        # list: first pages and pages deep in the list (cursor from a real walk)
        first = ["/api/v1/projects/bench/runs?limit=50" for _ in range(args.requests // 2)]
        deep = s.admin.get("/api/v1/projects/bench/runs", params={"limit": 500}).json()
        for _ in range(min(20, args.runs // 500 - 2)):  # about 10,000 runs deep at most
            deep = s.admin.get("/api/v1/projects/bench/runs",
                               params={"limit": 500, "cursor": deep["next_cursor"]}).json()
        cur = deep["next_cursor"]
        lists = first[: args.requests // 4] + [
            f"/api/v1/projects/bench/runs?limit=50&cursor={cur}"] * (args.requests // 4)
        gets = [f"/api/v1/projects/bench/runs/{rng.choice(ids)}"
                for _ in range(args.requests // 2)]
        out: dict[str, object] = {"db": kind, "runs": args.runs, "workers": args.workers,
                                  "fill_s": round(fill_s, 1),
                                  "rss_idle_mb": round(idle, 1)}
        for name, paths in (("list", lists), ("get", gets)):
            asyncio.run(load(s.url, s.admin_token, paths[:200], args.clients))  # warm up
            cpu0 = cpu_s(s.proc.pid)
            t1 = time.perf_counter()
            lat = asyncio.run(load(s.url, s.admin_token, paths, args.clients))
            wall = time.perf_counter() - t1
            # the server's own CPU time per request (all its processes): what a request
            # costs, whatever else the machine is doing
            out[f"{name}_cpu_ms"] = round((cpu_s(s.proc.pid) - cpu0) / len(lat) * 1000, 2)
            out[f"{name}_p50_ms"] = round(statistics.median(lat), 2)
            out[f"{name}_p99_ms"] = round(pct(lat, 0.99), 2)
            out[f"{name}_rps"] = round(len(lat) / wall, 1)
        out["rss_loaded_mb"] = round(rss_mb(s.proc.pid), 1)
        return out
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


def bench_submit(kind: str, db_url: str, args: argparse.Namespace) -> dict[str, object]:
    """(b): submissions per second, with ``args.clients`` clients, nothing executing."""
    import httpx

    from insitu.store import open_store

    proc, url, token, spec, digest, home = _submit_setup(kind, db_url, "--max-engines", "0")
    try:
        accepted: list[str] = []
        refused = 0
        body = {"spec": spec, "package": digest, "no_cache": True}

        async def run(n: int) -> None:
            nonlocal refused
            left = [n]
            limits = httpx.Limits(max_connections=args.clients)
            async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits,
                                         headers={"Authorization": f"Bearer {token}"}) as c:
                async def worker() -> None:
                    nonlocal refused
                    while left[0] > 0:
                        left[0] -= 1
                        r = await c.post("/api/v1/projects/default/runs", json=body)
                        if r.status_code == 201:
                            accepted.append(r.json()["id"])
                        else:
                            refused += 1

                await asyncio.gather(*(worker() for _ in range(args.clients)))

        asyncio.run(run(50))  # warm up
        accepted.clear()
        t0 = time.perf_counter()
        asyncio.run(run(args.submissions))
        wall = time.perf_counter() - t0
        store = open_store(db_url)
        try:
            stored = {r.id for r in store.list_runs(project="default")}
        finally:
            store.close()
        lost = len(set(accepted) - stored)
        return {"submit_per_s": round(len(accepted) / wall, 1), "submit_accepted":
                len(accepted), "submit_refused": refused, "submit_lost": lost}
    finally:
        _stop(proc, home)


def bench_first_step(kind: str, db_url: str, args: argparse.Namespace) -> dict[str, object]:
    """(c): seconds from submitting to the first step's attempt starting, idle server."""
    import httpx

    from insitu.store import open_store

    proc, url, token, spec, digest, home = _submit_setup(kind, db_url)
    store = open_store(db_url)
    waits: list[float] = []
    try:
        with httpx.Client(base_url=url, timeout=60,
                          headers={"Authorization": f"Bearer {token}"}) as c:
            for _ in range(args.first_step_runs):
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
                    time.sleep(0.05)
                starts = [a.started_at for a in store.list_attempts(rid) if a.started_at]
                if run.state != "succeeded" or not starts:
                    raise RuntimeError(f"run {rid} ended {run.state}")
                waits.append((min(starts) - t0) * 1000)
    finally:
        store.close()
        _stop(proc, home)
    return {"first_step_p50_ms": round(statistics.median(waits), 1),
            "first_step_max_ms": round(max(waits), 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--submissions", type=int, default=1000)
    ap.add_argument("--first-step-runs", type=int, default=10)
    ap.add_argument("--only-submit", action="store_true",
                    help="measure only (b) and (c), not the API latency on a full database")
    ap.add_argument("--workers", type=int, default=1, help="server processes (--workers)")
    args = ap.parse_args()
    import pg_fixture

    def one(kind: str, make_url: Callable[[], str]) -> dict[str, object]:
        row: dict[str, object] = {"db": kind}
        if not args.only_submit:
            row.update(bench(kind, make_url(), args))
        row.update(bench_submit(kind, make_url(), args))
        row.update(bench_first_step(kind, make_url(), args))
        return row

    rows = []
    home = Path(tempfile.mkdtemp(prefix="insitu-bench-sqlite-"))
    try:
        n = iter(range(100))
        rows.append(one("sqlite", lambda: f"sqlite:///{home / f'server{next(n)}.db'}"))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    pg = pg_fixture._Cluster(pg_fixture._bin_dir())  # type: ignore[arg-type]
    pg.start()
    try:
        rows.append(one("postgresql",
                        lambda: pg.create_database("b_" + secrets.token_hex(4))))
    finally:
        pg.stop()
    cols = ["db", "runs", "list_p50_ms", "list_p99_ms", "list_rps", "list_cpu_ms", "get_p50_ms",
            "get_p99_ms", "get_rps", "get_cpu_ms", "rss_idle_mb", "rss_loaded_mb",
            "submit_per_s", "submit_lost", "first_step_p50_ms"]
    print(f"server API, {args.clients} concurrent clients, {args.requests} requests per kind, "
          f"{args.workers} server worker(s), {os.cpu_count()} CPUs")
    print("  ".join(f"{c:>13}" for c in cols))
    for r in rows:
        print("  ".join(f"{str(r.get(c, '-')):>13}" for c in cols))
    out = HERE / "results" / ("server-submit.json" if args.only_submit else "server.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
