"""Project quotas over the API: read a project's quota and what it uses, set it, remove it.

A quota is written in the same exclusive transaction that engines admit work in
(:meth:`insitu.store.SQLStore.exclusive`), with its audit record. A quota below what the
project's running work uses now is refused, naming that work, unless the caller asks to
``force`` it: then running work continues and new work waits until use is back under it.
"""

from __future__ import annotations

import math
import time
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import Field

from insitu._units import format_bytes, parse_memory
from insitu.engine._quota import use_of
from insitu.errors import Conflict, UserError
from insitu.server._access import API, Principal, no_project
from insitu.server._domain import audit, check_name
from insitu.server._routes import Text, _Write, authorize
from insitu.store import ClaimRecord, ProjectRecord, QuotaRecord, Store

RESOURCE_HINT = "use cpu (cores), memory (bytes or e.g. '32GiB'), gpu (GPUs of any type, " \
                "fractions allowed) or gpu:MODEL (GPUs of one model, e.g. gpu:A100)"

Amount = float | int | str


class QuotaIn(_Write):
    quota: dict[Text, Amount] = Field(default_factory=dict)
    cohort: Text | None = Field(default=None, max_length=63)
    borrowing_limit: dict[Text, Amount] = Field(default_factory=dict)
    lending_limit: dict[Text, Amount] = Field(default_factory=dict)
    force: bool = False


router = APIRouter(prefix=API, dependencies=[Depends(authorize)])


def _amounts(project: str, field: str, given: dict[str, Amount]) -> dict[str, float]:
    """Checked amounts: cores and GPUs as numbers, memory in bytes."""
    out: dict[str, float] = {}
    where = f"{field} of project {project!r}"
    for k, v in given.items():
        if k not in ("cpu", "memory", "gpu") and not (k.startswith("gpu:") and len(k) > 4):
            raise UserError(f"{where}: unknown resource {k!r}", hint=RESOURCE_HINT)
        if k == "memory":
            if v == 0:
                out[k] = 0
                continue
            out[k] = parse_memory(v, what=f"memory in the {where}")
            continue
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) \
                or v < 0:
            raise UserError(f"{where}: {k} must be a number >= 0, not {v!r}",
                            hint=f"e.g. {{\"{k}\": 8}}")
        if k == "cpu" or k.startswith("gpu"):
            v = round(float(v), 3)  # milli-cores, milli-GPUs
        out[k] = v
    return out


def _show(k: str, v: float) -> str:
    if k == "memory":
        return format_bytes(int(v))
    unit = {"cpu": "CPU", "gpu": "GPU"}.get(k, k[4:])
    return f"{v:g} {unit}"


def _demand(c: ClaimRecord, k: str) -> float:
    if k == "cpu":
        return c.cpu / 1000
    if k == "memory":
        return float(c.memory)
    if k == "gpu":
        return c.gpu / 1000
    return c.gpu / 1000 if c.gpu_type == k[4:] else 0.0


def _view(project: str, q: QuotaRecord | None, claims: list[ClaimRecord]) -> dict[str, Any]:
    running = [c for c in claims if c.state != "waiting"]
    use = {k: round(v, 3) for k, v in use_of(running).items()}
    base: dict[str, Any] = {"project": project, "use": use,
                            "running": len(running),
                            "waiting": len(claims) - len(running)}
    if q is None:
        return {**base, "quota": None, "cohort": None, "borrowing_limit": {},
                "lending_limit": {}, "updated_at": None, "updated_by": None}
    return {**base, "quota": q.quota, "cohort": q.cohort, "borrowing_limit": q.borrowing_limit,
            "lending_limit": q.lending_limit, "updated_at": q.updated_at,
            "updated_by": q.updated_by}


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _exists(store: Store, project: str) -> None:
    if not store.select(ProjectRecord, name=project):
        raise no_project(project)


@router.get("/projects/{project}/quota")
def get_quota(request: Request, project: str) -> dict[str, Any]:
    """The project's quota (``null``: not limited) and what its work uses now."""
    store = _store(request)
    _exists(store, project)
    with store.exclusive() as tx:  # type: ignore[attr-defined]
        q = next((x for x in tx.quotas() if x.project == project), None)
        return _view(project, q, tx.claims(project))


@router.put("/projects/{project}/quota")
def set_quota(request: Request, project: str, body: QuotaIn) -> dict[str, Any]:
    """Set the project's quota (replacing the one it had)."""
    store = _store(request)
    who: Principal = request.state.principal
    _exists(store, project)
    quota = _amounts(project, "quota", body.quota)
    borrow = _amounts(project, "borrowing_limit", body.borrowing_limit)
    lend = _amounts(project, "lending_limit", body.lending_limit)
    if body.cohort is not None:
        check_name("cohort", body.cohort)
    elif borrow or lend:
        raise UserError(f"project {project!r}: borrowing and lending limits need a cohort",
                        hint="give the cohort the project borrows from and lends to, e.g. "
                             "\"cohort\": \"research\"")
    rec = QuotaRecord(project=project, quota=quota, cohort=body.cohort,
                      borrowing_limit=borrow, lending_limit=lend, updated_at=time.time(),
                      updated_by=who.user)
    client = request.client.host if request.client else None
    with store.exclusive() as tx:  # type: ignore[attr-defined]
        claims = tx.claims(project)
        running = [c for c in claims if c.state != "waiting"]
        use = use_of(running)
        over = [k for k, v in quota.items() if use.get(k, 0.0) > v + 1e-9]
        if over and not body.force:
            k = over[0]
            users = sorted(((c, _demand(c, k)) for c in running if _demand(c, k) > 0),
                           key=lambda x: -x[1])
            what = "; ".join(f"run {c.run_id} step {c.task_id} ({_show(k, d)})"
                             for c, d in users[:5])
            if len(users) > 5:
                what += f"; and {len(users) - 5} more"
            raise Conflict(
                f"project {project!r} uses {_show(k, use[k])} now, more than the quota of "
                f"{_show(k, quota[k])} asked ({what}); nothing was changed",
                hint="wait for that work to end (or cancel it) and set the quota again, or "
                     "set it anyway with \"force\": true (insitu quota set --force): running "
                     "work continues and new work waits until use is under the quota")
        tx.put_quota(rec)
        tx.put_records(audit(who, "quota.set", project=project, obj=f"quota/{project}",
                             client=client, detail={
                                 "quota": quota, "cohort": body.cohort,
                                 "borrowing_limit": borrow, "lending_limit": lend,
                                 **({"forced_over": over} if over else {})}))
        return _view(project, rec, claims)


@router.delete("/projects/{project}/quota", status_code=204)
def delete_quota(request: Request, project: str) -> Response:
    """Remove the project's quota: its work is no longer limited."""
    store = _store(request)
    who: Principal = request.state.principal
    _exists(store, project)
    client = request.client.host if request.client else None
    with store.exclusive() as tx:  # type: ignore[attr-defined]
        had = tx.delete_quota(project)
        tx.put_records(audit(who, "quota.delete", project=project, obj=f"quota/{project}",
                             client=client, detail={"existed": had}))
    return Response(status_code=204)
