"""Model serving side by side: insitu, MLServer (with and without adaptive batching) and a
bare Starlette + uvicorn endpoint, on the same scikit-learn model (logistic regression on the
30 features of scikit-learn's breast-cancer data), one row per request, Open Inference
Protocol v2 over REST, at concurrency 1, 8 and 64; medians of 3 runs.

    python benchmarks/serving.py [--seconds 5] [--runs 3] [--skip-mlserver]

The load generator is ``wrk`` (Debian's package: ``apt-get install -y wrk``), one thread,
keep-alive connections, the POST body from a Lua script: a C client on loopback that costs
a few microseconds of CPU per request, so the figures are the servers' and not the client's.
MLServer is a peer, not a dependency: it is installed on first use into its own virtual
environment under ~/.cache/insitu-bench (``--mlserver-python`` to use another).

Also measured: cold start (process start to the first answer; for insitu also scale from
zero to the first answer with the model load, replicas at zero after ``--idle``), and idle
memory as PSS (proportional set size: shared pages counted once across processes) per
replica process, plus insitu's front and warm processes. Prints a table and writes
benchmarks/results/serving.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
SRC = HERE.parent / "src"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "insitu-bench"

BARE = '''
import sys, joblib, numpy as np, orjson, uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
model = joblib.load(sys.argv[1])
async def infer(request):
    doc = orjson.loads(await request.body())
    t = doc["inputs"][0]
    x = np.asarray(t["data"], dtype=np.float64).reshape(t["shape"])
    y = model.predict(x)
    return Response(orjson.dumps({"model_name": "bench", "model_version": "1", "outputs": [
        {"name": "predict", "datatype": "INT64", "shape": list(y.shape), "data": y}]},
        option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")
app = Starlette(routes=[Route("/v2/models/bench/infer", infer, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning",
            access_log=False, loop="uvloop", http="httptools")
'''

TRAIN = '''
import insitu, joblib
@insitu.step
def bench_model(path: str):
    return joblib.load(path)
@insitu.pipeline
def bench(path: str = ""):
    bench_model(path)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post(url: str, body: bytes, timeout: float = 120) -> bytes:
    req = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return bytes(r.read())


def first_answer(url: str, body: bytes, proc: subprocess.Popen[Any], timeout: float = 180
                 ) -> float:
    """Poll until ``url`` answers 200; the time it did (monotonic)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            post(url, body, timeout=5)
            return time.monotonic()
        except OSError:
            time.sleep(0.01)
    raise TimeoutError(url)


def pss_mb(pid: int) -> float:
    import psutil

    return round(psutil.Process(pid).memory_full_info().pss / 2**20, 1)


def tree(pid: int) -> list[int]:
    import psutil

    p = psutil.Process(pid)
    return [p.pid, *(c.pid for c in p.children(recursive=True))]


def wrk(url: str, lua: Path, conns: int, seconds: float) -> dict[str, float]:
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{max(1, round(seconds))}s", "--latency",
                          "-s", str(lua), url], capture_output=True, text=True, check=True,
                         timeout=seconds + 60).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return float("nan")
        v = float(m.group(1))
        return round(v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v, 3)

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors:.*", out)
    return {"rps": round(rps, 1), "p50_ms": ms("50%"), "p99_ms": ms("99%"),
            "non_2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": errs.group(0) if errs else ""}


class Server:
    """One server under test: a command, its URL, how to find its replica processes."""

    def __init__(self, name: str, cmd: list[str], url: str, env: dict[str, str],
                 cwd: str | None = None) -> None:
        self.name, self.cmd, self.url, self.env, self.cwd = name, cmd, url, env, cwd
        self.proc: subprocess.Popen[Any] | None = None
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - the server's output, kept open

    def start(self, body: bytes) -> float:
        t0 = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, env=self.env, cwd=self.cwd, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        return first_answer(self.url, body, self.proc) - t0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def make_model(work: Path) -> tuple[Path, bytes]:
    import joblib
    import numpy as np
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    x, y = load_breast_cancer(return_X_y=True)
    model = LogisticRegression(max_iter=10_000).fit(x, y)
    path = work / "model.joblib"
    joblib.dump(model, path)
    row = np.round(x[0], 6).tolist()
    body = json.dumps({"inputs": [{"name": "input-0", "shape": [1, 30], "datatype": "FP64",
                                   "data": row}]}).encode()
    return path, body


def mlserver_python(given: str | None) -> str | None:
    if given:
        return given
    venv = CACHE / "mlserver-venv"
    py = venv / "bin" / "python"
    if not (venv / "bin" / "mlserver").exists():
        print(f"installing MLServer into {venv} (once)...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        # MLServer 1.7's workers call asyncio.get_event_loop(), which uvloop 0.22 refuses
        r = subprocess.run([str(py), "-m", "pip", "install", "-q", "mlserver",
                            "mlserver-sklearn", "uvloop<0.22"], capture_output=True, text=True)
        if r.returncode != 0:
            print(f"MLServer could not be installed:\n{r.stderr[-2000:]}")
            return None
    return str(py)


def mlserver_dir(work: Path, model: Path, batching: bool, port: int) -> Path:
    d = work / f"mlserver-{'batch' if batching else 'plain'}"
    (d / "bench").mkdir(parents=True, exist_ok=True)
    shutil.copy(model, d / "bench" / "model.joblib")
    settings: dict[str, Any] = {"name": "bench", "implementation":
                                "mlserver_sklearn.SKLearnModel",
                                "parameters": {"uri": "./model.joblib", "version": "1"}}
    if batching:
        settings.update({"max_batch_size": 64, "max_batch_time": 0.002})
    (d / "bench" / "model-settings.json").write_text(json.dumps(settings))
    (d / "settings.json").write_text(json.dumps({
        "http_port": port, "grpc_port": free_port(), "metrics_port": free_port(),
        "host": "127.0.0.1", "debug": False}))
    return d


def insitu_home(work: Path, model: Path) -> Path:
    """A home with the model registered as bench@champion from a pipeline step."""
    home = work / "insitu-home"
    (work / "bench_pipe.py").write_text(TRAIN)
    env = {**os.environ, "INSITU_HOME": str(home), "PYTHONPATH": str(SRC)}
    code = (f"import sys; sys.path.insert(0, {str(work)!r}); import insitu, bench_pipe; "
            f"r = insitu.run(bench_pipe.bench, path={str(model)!r}); "
            "insitu.models.register('bench', run=r.id, step='bench_model', alias='champion')")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    return home


def describe(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/admin/endpoint", timeout=30) as r:
        return dict(json.loads(r.read()))


def replica_pids(url: str) -> list[int]:
    d = describe(url)
    return [r["pid"] for v in d["versions"].values() for r in v["replicas"].values()
            if r["state"] == "ready"]


def scale_from_zero(work: Path, home: Path, body: bytes, runs: int) -> list[float]:
    """insitu with --min 0 --idle 1: wait for zero replicas, then time one request."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "INSITU_HOME": str(home), "PYTHONPATH": str(SRC)}
    infer = f"{url}/v2/models/bench/infer"
    s = Server("insitu-zero", [sys.executable, "-m", "insitu", "serve", "bench@champion",
                               "--port", str(port), "--min", "0", "--idle", "1"],
               infer, env)
    out = []
    try:
        s.start(body)
        for _ in range(runs):
            deadline = time.monotonic() + 60
            while replica_pids(url) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not replica_pids(url), "did not scale to zero"
            t0 = time.perf_counter()
            post(infer, body)
            out.append(round((time.perf_counter() - t0) * 1000, 1))
    finally:
        s.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0, help="per wrk run")
    ap.add_argument("--runs", type=int, default=3, help="runs per point (the median is kept)")
    ap.add_argument("--concurrency", default="1,8,64")
    ap.add_argument("--skip-mlserver", action="store_true")
    ap.add_argument("--mlserver-python", default=None)
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    conc = [int(c) for c in args.concurrency.split(",")]
    work = Path(tempfile.mkdtemp(prefix="insitu-bench-serving-"))
    try:
        model, body = make_model(work)
        lua = work / "post.lua"
        lua.write_text(f"wrk.method = \"POST\"\nwrk.body = {json.dumps(body.decode())}\n"
                       "wrk.headers[\"Content-Type\"] = \"application/json\"\n")
        home = insitu_home(work, model)
        servers = []
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        p = free_port()
        servers.append(("bare starlette", Server(
            "bare", [sys.executable, "-c", BARE, str(model), str(p)],
            f"http://127.0.0.1:{p}/v2/models/bench/infer", env)))
        p = free_port()
        servers.append(("insitu", Server(
            "insitu", [sys.executable, "-m", "insitu", "serve", "bench@champion", "--port",
                       str(p)], f"http://127.0.0.1:{p}/v2/models/bench/infer",
            {**env, "INSITU_HOME": str(home)})))
        mpy = None if args.skip_mlserver else mlserver_python(args.mlserver_python)
        if mpy:
            mbin = str(Path(mpy).parent / "mlserver")
            for batching in (False, True):
                p = free_port()
                d = mlserver_dir(work, model, batching, p)
                servers.append((f"mlserver{' +batching' if batching else ''}", Server(
                    "mlserver", [mbin, "start", str(d)],
                    f"http://127.0.0.1:{p}/v2/models/bench/infer",
                    {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, cwd=str(d))))
        rows = []
        for label, s in servers:
            row: dict[str, Any] = {"server": label}
            try:
                colds = [s.start(body)]
                for _ in range(args.runs - 1):  # cold start: median of runs too
                    s.stop()
                    colds.append(s.start(body))
                row["cold_start_s"] = round(statistics.median(colds), 2)
                time.sleep(1.0)
                assert s.proc is not None
                pids = tree(s.proc.pid)
                row["pss_total_mb"] = round(sum(pss_mb(p) for p in pids), 1)
                if label == "insitu":
                    base = s.url.split("/v2/")[0]
                    reps = replica_pids(base)
                    row["pss_replica_mb"] = max(pss_mb(p) for p in reps)
                    row["pss_front_mb"] = pss_mb(s.proc.pid)
                for c in conc:
                    wrk(s.url, lua, c, 1.0)  # warm-up
                    got = [wrk(s.url, lua, c, args.seconds) for _ in range(args.runs)]
                    med = {k: statistics.median(g[k] for g in got)
                           for k in ("rps", "p50_ms", "p99_ms")}
                    row[f"c{c}"] = {**med, "non_2xx": sum(g["non_2xx"] for g in got),
                                    "runs": got}
                    print(f"  {label:>18} c={c:<3} {med['rps']:>8.0f} req/s  p50 "
                          f"{med['p50_ms']:.2f} ms  p99 {med['p99_ms']:.2f} ms", flush=True)
            finally:
                s.stop()
            rows.append(row)
        zero = scale_from_zero(work, home, body, args.runs)
        summary = {"scale_from_zero_ms": zero,
                   "scale_from_zero_median_ms": statistics.median(zero)}
        print(f"\nsklearn logistic regression, 30 features, one row per request, wrk -t1 on "
              f"loopback, {args.seconds:.0f} s per run, median of {args.runs}; "
              f"{os.cpu_count()} CPUs")
        cols = ["server", *[f"c{c} rps" for c in conc], *[f"c{c} p50" for c in conc],
                *[f"c{c} p99" for c in conc], "cold s", "PSS MB"]
        print("  ".join(f"{c:>15}" for c in cols))
        for r in rows:
            vals = [r["server"], *[r[f"c{c}"]["rps"] for c in conc],
                    *[r[f"c{c}"]["p50_ms"] for c in conc],
                    *[r[f"c{c}"]["p99_ms"] for c in conc], r["cold_start_s"],
                    r.get("pss_replica_mb", r["pss_total_mb"])]
            print("  ".join(f"{str(v):>15}" for v in vals))
        ins = next(r for r in rows if r["server"] == "insitu")
        print(f"insitu: scale from zero to first answer (model load included): "
              f"{zero} ms, median {summary['scale_from_zero_median_ms']} ms; PSS per replica "
              f"{ins['pss_replica_mb']} MB, front {ins['pss_front_mb']} MB, all processes "
              f"{ins['pss_total_mb']} MB")
        out = HERE / "results" / "serving.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"rows": rows, **summary, "cpus": os.cpu_count(),
                                   "seconds": args.seconds, "runs": args.runs}, indent=2))
        print(f"wrote {out}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
