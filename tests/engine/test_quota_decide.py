"""One admission pass over quotas and claims (pure: no engine, no database)."""

from __future__ import annotations

from insitu.engine._quota import ADMITTED, EVICTED, WAITING, decide
from insitu.store import ClaimRecord, QuotaRecord


def claim(run: str, project: str, *, state: str = WAITING, at: float = 0.0, cpu: float = 0,
          gpu: float = 0, gpu_type: str | None = None, priority: int = 0,
          restartable: bool = False) -> ClaimRecord:
    return ClaimRecord(run_id=run, task_id="s", project=project, state=state, created_at=at,
                       cpu=round(cpu * 1000), gpu=round(gpu * 1000), gpu_type=gpu_type,
                       priority=priority, restartable=restartable)


def states(changed: list[ClaimRecord]) -> dict[str, str]:
    return {c.run_id: c.state for c in changed}


def test_the_reason_names_the_quota_the_cohort_and_the_lending_limit() -> None:
    quotas = [QuotaRecord(project="vision", quota={"gpu:A100": 4}, cohort="research"),
              QuotaRecord(project="nlp", quota={"gpu:A100": 2}, cohort="research",
                          lending_limit={"gpu:A100": 1})]
    running = [claim(f"r{i}", "vision", state=ADMITTED, gpu=1, gpu_type="A100")
               for i in range(4)]
    changed = decide(quotas, [*running, claim("w", "vision", at=1, gpu=2, gpu_type="A100")])
    (c,) = changed
    assert c.state == WAITING
    assert c.reason == ("project vision uses 4 of its 4 A100 and the step asks for 2 more; "
                        "cohort research has 2 idle A100 it may borrow, limited to 1 by its "
                        "lending limit")
    # one A100 fits within the lending limit: borrowed
    changed = decide(quotas, [*running, claim("w", "vision", at=1, gpu=1, gpu_type="A100")])
    assert states(changed) == {"w": ADMITTED}


def test_no_cohort_and_borrowing_limit_reasons() -> None:
    alone = [QuotaRecord(project="vision", quota={"cpu": 2})]
    (c,) = decide(alone, [claim("a", "vision", state=ADMITTED, cpu=2),
                          claim("b", "vision", at=1, cpu=1)])
    assert c.reason == ("project vision uses 2 of its 2 CPU and the step asks for 1 more; "
                        "it is in no cohort, so it cannot borrow")
    pair = [QuotaRecord(project="vision", quota={"cpu": 2}, cohort="c",
                        borrowing_limit={"cpu": 1}),
            QuotaRecord(project="nlp", quota={"cpu": 8}, cohort="c")]
    (c,) = decide(pair, [claim("a", "vision", state=ADMITTED, cpu=2),
                         claim("b", "vision", at=1, cpu=2)])
    assert c.reason == ("project vision uses 2 of its 2 CPU and the step asks for 2 more; it "
                        "may borrow at most 1 CPU (its borrowing limit) and borrows 0")


def test_a_project_without_a_quota_is_admitted() -> None:
    assert states(decide([], [claim("a", "free", cpu=100)])) == {"a": ADMITTED}


def test_reclaim_evicts_restartable_borrowed_work_first() -> None:
    quotas = [QuotaRecord(project="vision", quota={"cpu": 1}, cohort="c"),
              QuotaRecord(project="nlp", quota={"cpu": 2}, cohort="c")]
    running = [claim("v0", "vision", state=ADMITTED, cpu=1),
               claim("v1", "vision", state=ADMITTED, cpu=1, restartable=False),
               claim("v2", "vision", state=ADMITTED, cpu=1, restartable=True)]
    changed = decide(quotas, [*running, claim("n", "nlp", at=5, cpu=1)])
    assert states(changed) == {"n": ADMITTED, "v2": EVICTED}
    (v,) = [c for c in changed if c.run_id == "v2"]
    assert v.by == "n/s" and "project nlp reclaims" in (v.reason or "")


def test_drf_admits_the_project_with_the_smaller_share_first() -> None:
    quotas = [QuotaRecord(project="vision", quota={"cpu": 1}, cohort="c"),
              QuotaRecord(project="nlp", quota={"cpu": 1}, cohort="c"),
              QuotaRecord(project="pool", quota={"cpu": 3}, cohort="c")]
    running = [*(claim(f"v{i}", "vision", state=ADMITTED, cpu=1) for i in range(3)),
               claim("n0", "nlp", state=ADMITTED, cpu=1)]
    # vision's claim is older, but nlp uses less of the cohort: nlp goes first
    changed = decide(quotas, [*running, claim("vw", "vision", at=1, cpu=1),
                              claim("nw", "nlp", at=2, cpu=1)])
    assert states(changed)["nw"] == ADMITTED
    assert states(changed)["vw"] == WAITING


def test_a_higher_priority_run_goes_first() -> None:
    quotas = [QuotaRecord(project="vision", quota={"cpu": 1})]
    changed = decide(quotas, [claim("low", "vision", at=1, cpu=1),
                              claim("high", "vision", at=2, cpu=1, priority=5)])
    assert states(changed) == {"high": ADMITTED, "low": WAITING}


def test_gpu_quotas_count_by_model_and_in_total() -> None:
    quotas = [QuotaRecord(project="vision", quota={"gpu": 3, "gpu:A100": 2})]
    running = [claim("a", "vision", state=ADMITTED, gpu=2, gpu_type="A100")]
    # a third A100 is over the A100 quota; a T4 is within the total of 3 GPUs
    changed = decide(quotas, [*running, claim("b", "vision", at=1, gpu=1, gpu_type="A100"),
                              claim("c", "vision", at=2, gpu=1, gpu_type="T4")])
    assert states(changed) == {"b": WAITING, "c": ADMITTED}
    (b,) = [c for c in changed if c.run_id == "b"]
    assert (b.reason or "").startswith("project vision uses 2 of its 2 A100 and the step asks "
                                       "for 1 more")
    # milli-GPUs: half a GPU more than the total of 3 waits
    changed = decide(quotas, [*running, claim("c", "vision", state=ADMITTED, gpu=1),
                              claim("d", "vision", at=3, gpu=0.5)])
    (d,) = changed
    assert d.reason == ("project vision uses 3 of its 3 GPU and the step asks for 0.5 more; "
                        "it is in no cohort, so it cannot borrow")
