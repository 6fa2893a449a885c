"""What a project holds besides runs, as the API shows it: models (versions, aliases,
lineage), datasets (shards and where they live) and tuning studies (trials).

Models and datasets belong to a project (``ModelRecord.project``, ``DatasetRecord.project``);
a study is a tuning step of a run, so it belongs to its run's project. One of another project
is the same 404 as one that does not exist, and a not-found message names only what the
project holds.
"""

from __future__ import annotations

import collections
import dataclasses
import re
import time
from typing import Any

from insitu.errors import NotFound, UserError, not_found
from insitu.server._access import Principal
from insitu.server._domain import _project, _run, audit
from insitu.store import (
    AliasRecord,
    DatasetRecord,
    ModelRecord,
    ModelVersionRecord,
    RunRecord,
    ShardRecord,
    Store,
    TrialRecord,
)

# -- models ---------------------------------------------------------------------------------


def _model(store: Store, project: str, name: str) -> ModelRecord:
    _project(store, project)
    found = [m for m in store.select(ModelRecord, name=name) if m.project == project]
    if not found:
        raise not_found("model", name, [m.name for m in store.select(ModelRecord,
                                                                     project=project)],
                        where=f"project {project!r}",
                        otherwise=f"list them with GET /api/v1/projects/{project}/models")
    return found[0]


def _aliases(store: Store, name: str) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for a in store.select(AliasRecord, name=name):
        out.setdefault(a.version, []).append(a.alias)
    return out


def version_view(v: ModelVersionRecord, aliases: list[str]) -> dict[str, Any]:
    """A model version as ``insitu models show --json`` prints it (and its output ref)."""
    return {"version": v.version, "aliases": sorted(aliases), "run_id": v.run_id,
            "step": v.task_id, "created_at": v.created_at, "tags": v.tags,
            "description": v.description, "lineage": v.lineage, "output": v.output}


def list_models(store: Store, project: str) -> list[dict[str, Any]]:
    """The project's models, as ``insitu models ls --json`` lists them."""
    _project(store, project)
    out = []
    for m in store.select(ModelRecord, project=project):
        vs = store.select(ModelVersionRecord, name=m.name)
        present = {v.version for v in vs}
        out.append({"name": m.name, "versions": len(vs),
                    "latest": max(present, default=None),
                    "aliases": {a.alias: a.version
                                for a in store.select(AliasRecord, name=m.name)
                                if a.version in present},
                    "description": m.description, "tags": m.tags,
                    "created_at": m.created_at})
    return out


def get_model(store: Store, project: str, name: str) -> dict[str, Any]:
    m = _model(store, project, name)
    al = _aliases(store, name)
    return {**dataclasses.asdict(m),
            "versions": [version_view(v, al.get(v.version, []))
                         for v in store.select(ModelVersionRecord, name=name)]}


_ALIAS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def move_alias(store: Store, who: Principal, project: str, name: str, alias: str,
               version: int, client: str | None) -> dict[str, Any]:
    """Point ``name@alias`` at ``version`` (made, or moved from another version), with its
    audit record in the same write."""
    _model(store, project, name)
    if not _ALIAS.match(alias):
        raise UserError(f"alias {alias[:40]!r} is not valid",
                        hint="use up to 128 letters, digits, '_', '-' and '.', starting with "
                             "a letter or digit (e.g. 'champion')")
    if not store.select(ModelVersionRecord, name=name, version=version):
        have = [v.version for v in store.select(ModelVersionRecord, name=name)]
        raise NotFound(f"model {name!r} has no version {version}",
                       hint=f"versions: {', '.join(map(str, sorted(have)))}" if have else
                       "it has no versions yet")
    before = store.select(AliasRecord, name=name, alias=alias)
    store.put(AliasRecord(name=name, alias=alias, version=version, updated_at=time.time()),
              audit(who, "model.alias", project=project, obj=f"model/{name}@{alias}",
                    client=client, detail={"version": version,
                                           "from": before[0].version if before else None}))
    return get_model(store, project, name)


def get_model_version(store: Store, project: str, name: str, version: int) -> dict[str, Any]:
    _model(store, project, name)
    found = store.select(ModelVersionRecord, name=name, version=version)
    if not found:
        have = [v.version for v in store.select(ModelVersionRecord, name=name)]
        raise NotFound(f"model {name!r} has no version {version}",
                       hint=f"versions: {', '.join(map(str, have))}" if have else
                       "it has no versions yet")
    return version_view(found[0], _aliases(store, name).get(version, []))


# -- datasets -------------------------------------------------------------------------------


def _dataset(store: Store, project: str, name: str) -> DatasetRecord:
    _project(store, project)
    found = [d for d in store.select(DatasetRecord, name=name) if d.project == project]
    if not found:
        raise not_found("dataset", name, [d.name for d in store.select(DatasetRecord,
                                                                       project=project)],
                        where=f"project {project!r}",
                        otherwise=f"list them with GET /api/v1/projects/{project}/datasets")
    return found[0]


def _shards(store: Store, name: str) -> list[ShardRecord]:
    return sorted(store.select(ShardRecord, dataset=name), key=lambda s: s.index)


def list_datasets(store: Store, project: str) -> list[dict[str, Any]]:
    """The project's datasets: shards, bytes and the nodes holding them (``insitu datasets
    ls``)."""
    _project(store, project)
    out = []
    for d in store.select(DatasetRecord, project=project):
        shards = _shards(store, d.name)
        out.append({**dataclasses.asdict(d), "shards": len(shards),
                    "bytes": sum(s.size for s in shards),
                    "nodes": sorted({r.get("node") or "url" for s in shards
                                     for r in s.replicas})})
    return out


def get_dataset(store: Store, project: str, name: str) -> dict[str, Any]:
    """A dataset with every shard: size, content hash, replicas (``insitu datasets show
    --json`` prints the same shards)."""
    d = _dataset(store, project, name)
    shards = _shards(store, name)
    return {**dataclasses.asdict(d), "bytes": sum(s.size for s in shards),
            "shards": [{"dataset": name, "shard": s.shard, "index": s.index, "size": s.size,
                        "digest": s.digest, "replicas": list(s.replicas)} for s in shards]}


# -- tuning studies -------------------------------------------------------------------------


def _tuned(run: RunRecord) -> dict[str, dict[str, Any]]:
    return {s["id"]: s["tune"] for s in run.spec.get("steps", []) if s.get("tune")}


def _study_head(run: RunRecord, step: str, cfg: dict[str, Any],
                records: list[TrialRecord]) -> dict[str, Any]:
    counts = collections.Counter(r.state for r in records)
    done = [r for r in records if r.state == "complete" and r.value is not None]
    best = None
    if done:
        pick = max if cfg.get("goal") == "maximize" else min
        b = pick(done, key=lambda r: (r.value, -r.number))
        best = {"number": b.number, "value": b.value, "params": b.params, "task": b.task_id}
    return {"study": f"{run.id}/{step}", "run_id": run.id, "step": step,
            "pipeline": run.pipeline, "goal": cfg.get("goal"), "metric": cfg.get("metric"),
            "algorithm": cfg.get("algorithm"), "trial_count": len(records),
            "ended": sum(n for k, n in counts.items() if k != "running"),
            "counts": dict(sorted(counts.items())), "best": best}


def list_studies(store: Store, project: str) -> list[dict[str, Any]]:
    """The project's tuning studies (``RUN/STEP``), newest run first."""
    _project(store, project)
    by_run: dict[str, dict[str, list[TrialRecord]]] = collections.defaultdict(
        lambda: collections.defaultdict(list))
    for r in store.select(TrialRecord):
        by_run[r.run_id][r.step_id].append(r)
    out = []
    for run_id, steps in by_run.items():
        try:
            run = store.get_run(run_id)
        except NotFound:
            continue
        if run.project != project:
            continue
        tuned = _tuned(run)
        for step, records in sorted(steps.items()):
            if step in tuned:
                out.append({**_study_head(run, step, tuned[step], records),
                            "created_at": run.created_at})
    return sorted(out, key=lambda s: (-s["created_at"], s["study"]))


def get_study(store: Store, project: str, run_id: str, step: str) -> dict[str, Any]:
    """One study: its goal, counts, best trial, and every trial (``insitu tune show``)."""
    run = _run(store, project, run_id)
    tuned = _tuned(run)
    if step not in tuned:
        raise NotFound(f"run {run.id} has no tuning step {step!r}",
                       hint=f"its tuning steps: {', '.join(tuned)}" if tuned else
                       "studies are named RUN/STEP after a run with insitu.tune")
    records = store.select(TrialRecord, run_id=run.id, step_id=step)
    tasks = {t.id: t for t in store.list_tasks(run.id)}
    trials = []
    for r in records:
        t = tasks.get(r.task_id)
        dur = t.ended_at - t.started_at if t and t.ended_at and t.started_at else None
        pruned_at = max(int(k) for k in r.intermediate) \
            if r.state == "pruned" and r.intermediate else None
        trials.append({"number": r.number, "task": r.task_id, "state": r.state,
                       "value": r.value, "params": r.params, "duration": dur,
                       "pruned_at": pruned_at, "intermediate": r.intermediate})
    return {**_study_head(run, step, tuned[step], records), "space": tuned[step].get("space"),
            "trials": trials}
