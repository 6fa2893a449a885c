"""The parts of distributed training that need no gang: the restart rule, the gang's
verdict from its ranks' exits, checkpoints and their errors, and bad input."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import pytest

import insitu
from insitu.engine._rules import Exit, Move, Retry, StopLaunching, on_exit
from insitu.errors import CheckpointError, ResourceError, TrainingUnavailable
from insitu.executor import AttemptExit, LaunchRequest
from insitu.executor._gang import Gang, rank_path, rank_requests
from insitu.store import AttemptRecord, TaskRecord
from insitu.store._states import AttemptState as A
from insitu.store._states import TaskState as T

torch = pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).parents[1] / "pipelines"))

RETRY = {"max": 0, "backoff": 1.0, "backoff_factor": 2.0, "retry_on": []}
LOST = {"kind": "lost", "rank": 1, "message": "rank 1: killed by SIGKILL"}


def _lost(n: int) -> AttemptRecord:
    return AttemptRecord(run_id="r", task_id="fit", number=n, state=A.FAILED, error=LOST)


def _exit(history: list[AttemptRecord], restarts: int | None = 3, **kw: Any) -> Exit:
    t = TaskRecord(run_id="r", id="fit", step_id="fit", state=T.RUNNING,
                   attempts=len(history))
    return Exit(task=t, error=kw.pop("error", LOST), output=None, at=10.0, retry=RETRY,
                history=history, restarts=restarts, now=11.0, **kw)


def test_a_lost_rank_restarts_the_gang_until_max_restarts_then_fails() -> None:
    for n in (1, 2, 3):  # max_restarts=3: three restarts, at once
        (eff,) = on_exit(_exit([_lost(i) for i in range(1, n + 1)]))
        assert isinstance(eff, Retry) and eff.at == 11.0
    fail, stop = on_exit(_exit([_lost(i) for i in range(1, 5)]))
    assert isinstance(fail, Move) and fail.to == T.FAILED and isinstance(stop, StopLaunching)
    assert "already restarted 3 times (max_restarts=3)" in fail.changes["error"]["message"]


def test_a_preempted_gang_or_a_user_error_does_not_use_the_restart_budget() -> None:
    pre = {**LOST, "preempted": True}
    history = [_lost(1), _lost(2), _lost(3),
               AttemptRecord(run_id="r", task_id="fit", number=4, state=A.FAILED, error=pre)]
    effects = on_exit(_exit(history, error=pre))
    assert isinstance(effects[0], Retry)  # requeued, however many restarts were used
    user = {"kind": "user", "type": "ValueError", "message": "bad", "rank": 1, "mro": []}
    mine = AttemptRecord(run_id="r", task_id="fit", number=2, state=A.FAILED, error=user)
    effects = on_exit(_exit([_lost(1), mine], error=user))  # retries=0: not retried
    assert isinstance(effects[0], Move) and effects[0].to == T.FAILED


def _req(tmp_path: Path, world: int = 3) -> LaunchRequest:
    return LaunchRequest(
        key="fit#1", run_id="r", task_id="fit", attempt=1, step="fit", function={}, args={},
        env={"A": "1"}, node="local", memory_limit=100, result_path=str(tmp_path / "fit.1.json"),
        stdout_path=str(tmp_path / "fit.1.out"), stderr_path=str(tmp_path / "fit.1.err"),
        artifacts_url=str(tmp_path), materialize_dir=str(tmp_path),
        ranks=tuple({"rank": r, "node": "local", "gpu_ids": ()} for r in range(world)),
        collective_timeout=30.0)


def _rank_exit(req: LaunchRequest, *, ok: bool = False, signal_: int | None = None,
               cancelled: bool = False, error: dict[str, Any] | None = None,
               t: float = 1.0) -> AttemptExit:
    result = {"ok": True, "output": {"kind": "inline", "value": 7}} if ok else \
        ({"ok": False, "error": error} if error else None)
    return AttemptExit(key=req.key, pid=100 + (req.rank or 0), signal=signal_,
                       exit_code=0 if ok or error else None, peak_memory=10, cpu_time=1.0,
                       started_at=0.0, ended_at=t, cancelled=cancelled, result=result,
                       node="local")


def test_each_rank_gets_the_rendezvous_environment_and_its_own_files(tmp_path: Path) -> None:
    ranks = rank_requests(_req(tmp_path), master_port=29999)
    assert [r.env["RANK"] for r in ranks] == ["0", "1", "2"]
    assert {r.env["WORLD_SIZE"] for r in ranks} == {"3"}
    assert [r.env["LOCAL_RANK"] for r in ranks] == ["0", "1", "2"]
    assert {(r.env["MASTER_ADDR"], r.env["MASTER_PORT"]) for r in ranks} == \
        {("127.0.0.1", "29999")}
    assert ranks[0].stdout_path.endswith("fit.1.out")  # rank 0 keeps the attempt's files
    assert ranks[2].stdout_path.endswith("fit.1.rank2.out")
    assert ranks[2].result_path.endswith("fit.1.rank2.json")
    assert all(r.memory_limit == 100 for r in ranks)
    assert rank_path("/x/t.1.err", 0) == "/x/t.1.err"


def test_the_gang_names_the_dead_rank_not_the_peers_that_lost_it(tmp_path: Path) -> None:
    req = _req(tmp_path)
    ranks = rank_requests(req, master_port=1)
    gang = Gang(req, ranks)
    assert gang.add(_rank_exit(ranks[1], signal_=signal.SIGKILL, t=1.0)) == \
        [ranks[0].key, ranks[2].key]  # stop the rest
    peer = {"kind": "user", "type": "RuntimeError", "mro": ["builtins.RuntimeError"],
            "message": "[gloo/transport/tcp/pair.cc:534] Connection closed by peer"}
    assert gang.add(_rank_exit(ranks[0], error=peer, t=1.1)) == []
    assert not gang.done
    gang.add(_rank_exit(ranks[2], signal_=signal.SIGKILL, cancelled=True, t=1.2))
    ex = gang.exit()
    assert ex.key == "fit#1" and ex.failed_rank == 1 and ex.signal == signal.SIGKILL
    assert [r["state"] for r in ex.ranks] == ["failed", "failed", "stopped"]
    assert ex.ranks[0]["collective"] is True


def test_a_gang_whose_peers_only_timed_out_lost_the_missing_rank(tmp_path: Path) -> None:
    req = _req(tmp_path, world=2)
    ranks = rank_requests(req, master_port=1)
    gang = Gang(req, ranks)
    timeout = {"kind": "user", "type": "RuntimeError", "mro": ["builtins.RuntimeError"],
               "message": "[gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting "
                          "30000ms for recv operation to complete"}
    gang.add(_rank_exit(ranks[0], error=timeout))
    gang.add(_rank_exit(ranks[1], signal_=signal.SIGKILL, cancelled=True))
    ex = gang.exit()
    assert ex.pid is None and ex.result is None and ex.failed_rank == 1
    assert ex.reason is not None and ex.reason.startswith(
        "rank 1 did not take part in a collective (timeout 30s)")


def test_all_ranks_ok_gives_rank_0s_result(tmp_path: Path) -> None:
    req = _req(tmp_path, world=2)
    ranks = rank_requests(req, master_port=1)
    gang = Gang(req, ranks)
    for r in ranks:
        gang.add(_rank_exit(r, ok=True))
    ex = gang.exit()
    assert ex.result == {"ok": True, "output": {"kind": "inline", "value": 7}}
    assert ex.failed_rank is None and [r["state"] for r in ex.ranks] == ["succeeded"] * 2


def test_checkpoints_keep_the_newest_and_refuse_what_does_not_fit(tmp_path: Path) -> None:
    from insitu import train
    from insitu.train import _context

    url = str(tmp_path / "artifacts")
    _context.begin(run_id="r1", task_id="fit", step_id="fit", attempt=1, artifacts_url=url)
    try:
        assert train.load_checkpoint() is None
        model = torch.nn.Linear(4, 1)
        for step in range(4):
            train.save_checkpoint({"model": model.state_dict()}, step=step, keep=2)
        kept = train.list_checkpoints(url, "r1")["fit"]
        assert [e["step"] for e in kept] == [2, 3]
        fresh = torch.nn.Linear(4, 1)
        ck = train.load_checkpoint({"model": fresh})
        assert ck is not None and ck.step == 3
        assert torch.equal(fresh.weight, model.weight)
        with pytest.raises(CheckpointError, match=r"state 'model' does not fit Linear: .*size"):
            train.load_checkpoint({"model": torch.nn.Linear(3, 1)})
        with pytest.raises(CheckpointError, match=r"has no state named 'optim'"):
            train.load_checkpoint({"optim": torch.optim.SGD(model.parameters(), lr=1)})
        _context.begin(run_id="r2", task_id="other", step_id="other", attempt=1,
                       artifacts_url=url)
        with pytest.raises(CheckpointError, match=r"saved by step 'fit' \(run r1\), not by "
                                                  r"this step 'other'"):
            train.load_checkpoint(checkpoint=kept[-1])
        got = train.load_checkpoint(checkpoint=kept[-1], allow_other_step=True)
        assert got is not None and got.saved_by == "fit"
        assert train.delete_checkpoints(url, "r1") == 2  # with its run
        assert train.list_checkpoints(url, "r1") == {}
        assert not any(Path(url, e["digest"][:2], e["digest"]).exists() for e in kept)
    finally:
        _context._step = None


def test_workers_beyond_the_cluster_name_the_largest_gang_that_fits(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import training

    monkeypatch.setenv("INSITU_NODE_CPUS", "4")
    with pytest.raises(ResourceError, match=r"a gang of 64 workers never fits this cluster; "
                                            r"the largest gang of this request that fits is 4 "
                                            r"workers \(use workers=4"):
        insitu.run(training.too_big)


def test_a_distributed_step_without_torch_says_how_to_install_it(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import training

    monkeypatch.setitem(sys.modules, "torch", None)  # what an environment without it has
    with pytest.raises(TrainingUnavailable) as e:
        insitu.run(training.ddp_and_restart)
    assert e.value.hint == "install it: pip install 'insitu[train]'"
