"""Replicas: adaptive batching merges concurrent requests; scale to zero after the idle
period and back on the next request (an injected clock); a replica killed under load is
replaced and the load loop loses nothing; a replica over its memory limit is stopped and
the cause is kept."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

from served import Http, body, wait_for

from insitu.serving import Autoscaling, Batching, EndpointSpec, Resources, Server


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _batch_sizes(metrics: str, name: str) -> dict[str, float]:
    out = {}
    for line in metrics.splitlines():
        if line.startswith("insitu_serving_batch_size_bucket") and f'model="{name}"' in line:
            le = line.split('le="')[1].split('"')[0]
            out[le] = float(line.rsplit(" ", 1)[1])
    return out


def test_concurrent_single_rows_are_predicted_in_batches(served_home: Path) -> None:
    spec = EndpointSpec(model="slow@champion", batching=Batching(max_batch_size=16,
                                                                 max_latency_ms=5))
    with Server(spec) as s:
        answers: list[tuple[int, list[float]]] = []

        def client(i: int) -> None:
            h = Http(s.url)
            for _ in range(4):
                req = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64",
                                   "data": [i, 1.0, 2.0]}]}
                status, _, doc = h.post("/v2/models/slow/infer", json.dumps(req).encode())
                answers.append((status, doc["outputs"][0]["data"]))
                assert doc["outputs"][0]["data"] == [i + 3.0]  # each gets its own row back
            h.close()

        threads = [threading.Thread(target=client, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(answers) == 48 and {a[0] for a in answers} == {200}
        sizes = _batch_sizes(Http(s.url).get("/metrics")[2], "slow")
        assert sizes["+Inf"] == 48
        assert sizes["1.0"] < 48  # some requests were predicted together with others


def test_scale_to_zero_and_back_with_an_injected_clock(served_home: Path) -> None:
    clock = Clock()
    spec = EndpointSpec(model="sk@champion",
                        autoscaling=Autoscaling(min_replicas=0, max_replicas=1,
                                                idle_seconds=60))
    with Server(spec, clock=clock) as s:
        ep = s.endpoint
        pool = ep.pool(ep.stable)
        assert pool.live_count == 0  # min 0: nothing starts before the first request
        h = Http(s.url)
        assert h.post("/v2/models/sk/infer", body())[0] == 200  # waits for a cold start
        assert pool.ready_count == 1
        pid = next(iter(pool.replicas.values())).pid
        assert pid is not None
        clock.now += 59
        assert h.post("/v2/models/sk/infer", body())[0] == 200
        clock.now += 59  # idle 59 s since the last request: still up
        assert pool.ready_count == 1
        clock.now += 2
        wait_for(lambda: pool.live_count == 0, what="scale to zero")
        wait_for(lambda: not os.path.exists(f"/proc/{pid}"), what="the replica's exit")
        assert h.get("/v2/models/sk/ready")[0] == 200  # ready: it scales from zero
        status, _, doc = h.post("/v2/models/sk/infer", body())
        assert status == 200 and doc["model_version"] == "1"
        assert pool.ready_count == 1 and len(pool.cold_starts) == 2
        print(f"cold starts (spawn to ready), s: {pool.cold_starts}")
        h.close()


def test_replicas_killed_under_load_are_replaced(served_home: Path) -> None:
    spec = EndpointSpec(model="sk@champion",
                        autoscaling=Autoscaling(min_replicas=2, max_replicas=2))
    with Server(spec) as s:
        pool = s.endpoint.pool(s.endpoint.stable)
        wait_for(lambda: pool.ready_count == 2, what="two replicas")
        answers: list[int] = []
        stop = threading.Event()

        def load() -> None:
            h = Http(s.url)
            while not stop.is_set():
                status, _, doc = h.post("/v2/models/sk/infer", body())
                answers.append(status)
                if status != 200:
                    print(doc)
            h.close()

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        wait_for(lambda: len(answers) > 100, what="load")
        victim = next(iter(pool.replicas.values()))
        os.kill(victim.pid or 0, signal.SIGKILL)
        wait_for(lambda: len(pool.deaths) == 1 and pool.ready_count == 2 and
                 victim.id not in pool.replicas, what="replacement")
        mark = len(answers)
        wait_for(lambda: len(answers) > mark + 100, what="load after replacement")
        # the warm process itself dies (and its replicas with it): another one starts
        fleet = s.endpoint.fleet
        os.kill(fleet.warm.proc.pid, signal.SIGKILL)
        wait_for(lambda: fleet.warm_restarts == 1 and pool.ready_count == 2, 120,
                 what="a new warm process and two replicas")
        mark = len(answers)
        wait_for(lambda: len(answers) > mark + 100, what="load after the new warm process")
        stop.set()
        for t in threads:
            t.join()
        print(f"load loop: {len(answers)} requests, "
              f"{sum(a != 200 for a in answers)} failed")
        assert [a for a in answers if a != 200] == []
        assert pool.deaths[0]["code"] == -signal.SIGKILL
        assert pool.deaths[0]["cause"] == f"killed by signal {signal.SIGKILL}"


def test_a_replica_over_its_memory_limit_is_stopped_with_the_cause(served_home: Path) -> None:
    spec = EndpointSpec(model="hog@champion", resources=Resources(memory=300 * 2**20))
    with Server(spec) as s:
        h = Http(s.url)
        pool = s.endpoint.pool(s.endpoint.stable)

        def ask(mib: int) -> tuple[int, dict[str, str], Any]:
            req = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [mib]}]}
            return h.post("/v2/models/hog/infer", json.dumps(req).encode())

        assert ask(10)[0] == 200
        status, _, doc = ask(-1)  # predict raises: the caller is told why, the replica stays
        assert status == 500 and "the model raised ValueError: negative dimensions" in \
            doc["error"], doc
        assert ask(10)[0] == 200 and not pool.deaths
        status, _, doc = ask(1000)
        assert status == 500, doc
        assert "died with the request in flight" in doc["error"]
        assert "stopped at its memory limit of 300.0 MiB" in doc["error"], doc
        assert pool.deaths and pool.deaths[0]["oom"]
        log = Path(s.endpoint.fleet.log(pool.deaths[0]["id"])).read_text()
        assert "stopped at its memory limit" in log
        assert ask(10)[0] == 200  # a new replica answers the next request
        h.close()


def test_a_model_that_cannot_load_is_a_clear_error_and_the_process_stays_up(
        served_home: Path) -> None:
    with Server(EndpointSpec(model="unl@champion")) as s:
        h = Http(s.url)
        for _ in range(2):  # the first starts a replica, the second is told the same
            status, _, doc = h.post("/v2/models/unl/infer", body())
            assert status == 500
            assert "model unl:1 could not be loaded: RuntimeError: the weights file is " \
                   "gone" in doc["error"], doc
        assert h.get("/v2/health/live")[0] == 200
        assert h.get("/v2/health/ready")[0] == 503
        status, _, doc = h.get("/v2/models/unl")
        assert status == 500 and "could not be loaded" in doc["error"]
        log = Path(s.endpoint.logdir)
        assert any("the weights file is gone" in f.read_text() for f in log.glob("*.log"))
        h.close()
