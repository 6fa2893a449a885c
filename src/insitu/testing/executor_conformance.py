"""The Executor conformance suite: every executor must pass it unchanged.

Usage::

    class TestMyExecutor(ExecutorConformance):
        @pytest.fixture
        def executor(self):
            ex = MyExecutor(...)
            yield ex
            ex.close()
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from insitu.artifacts import ArtifactStore, load
from insitu.executor import AttemptExit, Executor, LaunchRequest

_STEPS = "insitu.testing._steps"


def request(tmp: Path, executor: Executor, key: str, fn: str, args: dict[str, Any] | None = None,
            **kw: Any) -> LaunchRequest:
    node = executor.nodes()[0].name
    (tmp / "logs").mkdir(exist_ok=True)
    fields: dict[str, Any] = dict(
        key=key, run_id="conformance", task_id=key, attempt=1, step=fn,
        function={"module": _STEPS, "file": None, "qualname": fn, "fingerprint": "x"},
        args={k: {"value": v} for k, v in (args or {}).items()}, env={}, node=node,
        result_path=str(tmp / "logs" / f"{key}.json"),
        stdout_path=str(tmp / "logs" / f"{key}.out"),
        stderr_path=str(tmp / "logs" / f"{key}.err"),
        artifacts_url=str(tmp / "artifacts"), materialize_dir=str(tmp / "mat"))
    fields.update(kw)
    return LaunchRequest(**fields)


def wait_all(executor: Executor, keys: set[str], timeout: float = 180
             ) -> dict[str, AttemptExit]:
    out: dict[str, AttemptExit] = {}
    deadline = time.time() + timeout
    while set(out) != keys:
        assert time.time() < deadline, f"attempts {keys - set(out)} never reported"
        for ex in executor.poll(0.5):
            assert ex.key not in out, f"{ex.key} reported twice"
            out[ex.key] = ex
    return out


class ExecutorConformance:
    """Behaviour every :class:`~insitu.executor.Executor` must show (see ``executor/_base.py``)."""

    def test_nodes_describe_capacity(self, executor: Executor) -> None:
        nodes = executor.nodes()
        assert nodes and all(n.cpu > 0 and n.memory > 0 and n.name for n in nodes)

    def test_success_stores_output_and_keeps_logs(self, executor: Executor,
                                                  tmp_path: Path) -> None:
        executor.launch(request(tmp_path, executor, "a", "add", {"x": 2, "y": 3}))
        ex = wait_all(executor, {"a"})["a"]
        assert ex.exit_code == 0 and not ex.timed_out and not ex.cancelled
        assert ex.result is not None and ex.result["ok"]
        assert load(ex.result["output"], ArtifactStore(str(tmp_path / "artifacts"))) == 5
        assert "adding 2 and 3" in (tmp_path / "logs" / "a.out").read_text()
        assert "to stderr" in (tmp_path / "logs" / "a.err").read_text()
        assert ex.peak_memory and ex.peak_memory > 1024 * 1024
        assert ex.cpu_time is not None and ex.cpu_time >= 0

    def test_result_file_is_written_atomically(self, executor: Executor,
                                               tmp_path: Path) -> None:
        req = request(tmp_path, executor, "r", "add", {"x": 1, "y": 1})
        executor.launch(req)
        wait_all(executor, {"r"})
        assert json.loads(Path(req.result_path).read_text())["ok"] is True
        assert not Path(req.result_path + ".tmp").exists()

    def test_user_exception_is_classified_with_file_and_line(self, executor: Executor,
                                                             tmp_path: Path) -> None:
        executor.launch(request(tmp_path, executor, "f", "fail", {"message": "bad input"}))
        ex = wait_all(executor, {"f"})["f"]
        assert ex.result is not None and not ex.result["ok"]
        err = ex.result["error"]
        assert err["kind"] == "user" and err["type"] == "ValueError"
        assert err["message"] == "bad input"
        assert err["file"].endswith("_steps.py") and isinstance(err["line"], int)
        assert "builtins.ValueError" in err["mro"]

    def test_memory_limit_stops_only_that_attempt(self, executor: Executor,
                                                  tmp_path: Path) -> None:
        executor.launch(request(tmp_path, executor, "hog", "allocate",
                                {"mib_per_step": 64, "steps": 40},
                                memory_limit=600 * 1024**2))
        executor.launch(request(tmp_path, executor, "ok", "allocate",
                                {"mib_per_step": 64, "steps": 2}))
        got = wait_all(executor, {"hog", "ok"})
        hog, ok = got["hog"], got["ok"]
        assert hog.result is None or not hog.result["ok"]
        if hog.result is not None:
            assert hog.result["error"]["kind"] == "oom"
        assert hog.peak_memory is not None and hog.peak_memory <= 700 * 1024**2
        assert ok.result is not None and ok.result["ok"]

    def test_timeout_stops_the_attempt(self, executor: Executor, tmp_path: Path) -> None:
        executor.launch(request(tmp_path, executor, "s", "sleep", {"seconds": 30}, timeout=1.0))
        ex = wait_all(executor, {"s"})["s"]
        assert ex.timed_out and ex.result is None  # stopped: a finished sleep has a result

    def test_cancel_stops_a_running_attempt(self, executor: Executor, tmp_path: Path) -> None:
        executor.launch(request(tmp_path, executor, "c", "sleep", {"seconds": 30}))
        time.sleep(0.5)
        executor.cancel("c")
        ex = wait_all(executor, {"c"}, timeout=20)["c"]
        assert ex.cancelled and ex.result is None

    def test_environment_and_gpu_ids_reach_the_step(self, executor: Executor,
                                                    tmp_path: Path) -> None:
        executor.launch(request(tmp_path, executor, "e", "environment",
                                {"names": ["MY_VAR", "CUDA_VISIBLE_DEVICES", "INSITU_TASK_ID"]},
                                env={"MY_VAR": "hello"}, gpu_ids=(1, 3)))
        ex = wait_all(executor, {"e"})["e"]
        assert ex.result is not None
        assert ex.result["output"]["value"] == {"MY_VAR": "hello", "CUDA_VISIBLE_DEVICES": "1,3",
                                                "INSITU_TASK_ID": "e"}

    def test_attempts_run_concurrently_in_separate_processes(self, executor: Executor,
                                                             tmp_path: Path) -> None:
        folder = str(tmp_path / "meet")
        for me, other in (("p1", "p2"), ("p2", "p1")):
            executor.launch(request(tmp_path, executor, me, "meet",
                                    {"folder": folder, "me": me, "other": other}))
        got = wait_all(executor, {"p1", "p2"}, timeout=300)
        (pid1, saw1), (pid2, saw2) = (g.result["output"]["value"]  # type: ignore[index]
                                      for g in (got["p1"], got["p2"]))
        assert pid1 != pid2
        assert saw1 and saw2, "the two attempts did not run at the same time"

    def test_crash_without_result_is_reported(self, executor: Executor, tmp_path: Path) -> None:
        executor.launch(request(tmp_path, executor, "d", "die", {"code": 3}))
        ex = wait_all(executor, {"d"})["d"]
        assert ex.result is None and ex.exit_code == 3

    def test_unserialisable_output_is_reported(self, executor: Executor,
                                               tmp_path: Path) -> None:
        executor.launch(request(tmp_path, executor, "u", "unpicklable"))
        ex = wait_all(executor, {"u"})["u"]
        assert ex.result is not None and ex.result["error"]["kind"] == "serialization"
        assert "cannot be serialised" in ex.result["error"]["message"]

    def test_close_stops_running_attempts(self, executor: Executor, tmp_path: Path) -> None:
        executor.launch(request(tmp_path, executor, "z", "pid_and_time"))
        executor.launch(request(tmp_path, executor, "zz", "sleep", {"seconds": 60}))
        pid_of = getattr(executor, "pid_of", None)
        deadline = time.time() + 10
        pid = None
        if pid_of is None:  # the executor cannot say; let the attempts start
            executor.poll(1.0)
        while pid_of is not None and pid is None and time.time() < deadline:
            executor.poll(0.2)
            pid = pid_of("zz")
        executor.close()
        if pid is not None:
            import psutil

            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"

    @pytest.mark.parametrize("n", [20])
    def test_many_small_attempts_each_reported_once(self, executor: Executor, tmp_path: Path,
                                                    n: int) -> None:
        keys = {f"m{i}" for i in range(n)}
        for i in range(n):
            executor.launch(request(tmp_path, executor, f"m{i}", "add", {"x": i, "y": 1}))
        got = wait_all(executor, keys)
        assert sorted(g.result["output"]["value"] for g in got.values()  # type: ignore[index]
                      ) == list(range(1, n + 1))
