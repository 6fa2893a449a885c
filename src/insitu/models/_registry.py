"""Registry operations over the Store (records: ModelRecord, ModelVersionRecord, AliasRecord)."""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from typing import Any

from insitu._config import load_config
from insitu.errors import Conflict, NotFound, UserError, not_found
from insitu.models._flavor import flavor_of_ref
from insitu.store import (
    AliasRecord,
    ModelRecord,
    ModelVersionRecord,
    ParamRecord,
    Store,
    open_store,
)
from insitu.store import _records as S

DEFAULT_PROJECT = "default"  # local use: everything is in it
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class ModelVersion:
    """A registered version with its aliases."""

    record: ModelVersionRecord
    aliases: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def version(self) -> int:
        return self.record.version

    @property
    def lineage(self) -> dict[str, Any]:
        return self.record.lineage

    @property
    def flavor(self) -> str:
        """The framework of the object (``sklearn``, ``pytorch``, ...; ``""`` if none is
        known); detected now for versions registered before flavours were recorded."""
        if self.record.flavor:
            return self.record.flavor
        return flavor_of_ref(self.record.output, lambda: _load_ref(self.record.output))

    def __repr__(self) -> str:
        tags = f" @{','.join(self.aliases)}" if self.aliases else ""
        return f"<ModelVersion {self.name}:{self.version}{tags} from run {self.record.run_id}>"


def _store(store: Store | None) -> Store:
    return store or open_store()


_MAX_NAME = 128


def _check_name(what: str, name: str) -> None:
    if len(name) > _MAX_NAME:
        raise UserError(f"invalid {what} {name[:40]!r}... ({len(name)} characters)",
                        hint=f"use at most {_MAX_NAME} characters")
    if not _NAME.match(name):
        raise UserError(f"invalid {what} {name!r}" + (" (it is empty)" if not name else ""),
                        hint="use letters, digits, '_', '-' and '.', starting with a letter "
                             "or digit")


def _lineage(store: Store, run: S.RunRecord, task: S.TaskRecord) -> dict[str, Any]:
    spec_step: dict[str, Any] = next(
        (s for s in run.spec["steps"] if s["id"] == task.step_id), {})
    tasks = {t.id: t for t in store.list_tasks(run.id)}
    from insitu.artifacts import content_id
    from insitu.engine._refs import upstream_steps

    inputs = {}
    for ref in spec_step.get("args", {}).values():
        for up in sorted(upstream_steps(ref)):
            out = tasks[up].output if up in tasks else None
            if out is not None:  # the content hash of what the step read
                inputs[up] = hashlib.sha256(content_id(out).encode()).hexdigest()
    logged = {p.name: p.value for p in store.select(ParamRecord, run_id=run.id,
                                                   task_id=task.id)}
    return {
        "run_id": run.id, "pipeline": run.pipeline, "step": task.id,
        "datasets": _datasets_read(spec_step, tasks, run),
        "params": run.params, "step_params": logged,
        "code_fingerprint": (spec_step.get("function") or {}).get("fingerprint"),
        "function": (spec_step.get("function") or {}).get("qualname"),
        "inputs": inputs,
    }


def _datasets_read(spec_step: dict[str, Any], tasks: dict[str, S.TaskRecord],
                   run: S.RunRecord) -> list[str]:
    """``name@version`` of every dataset whose shards fed this step or its upstream steps;
    the version is a hash of the shard digests read."""
    from insitu.datasets import shards_in
    from insitu.engine._refs import upstream_steps

    steps = {s["id"]: s for s in run.spec["steps"]}
    seen: dict[str, set[str]] = {}
    todo, visited = [spec_step], set()
    while todo:
        s = todo.pop()
        if s.get("id") in visited:
            continue
        visited.add(s.get("id"))
        refs = list(s.get("args", {}).values()) + ([s["map"]["over"]] if s.get("map") else [])
        for ref in refs:
            for shard in shards_in(ref.get("const")):
                seen.setdefault(shard["dataset"], set()).add(shard["digest"])
            for up in upstream_steps(ref):
                if up in steps:
                    todo.append(steps[up])
    return sorted(f"{name}@{hashlib.sha256(''.join(sorted(d)).encode()).hexdigest()[:12]}"
                  for name, d in seen.items())


def register(name: str, *, run: str, step: str, description: str = "",
             tags: dict[str, str] | None = None, alias: str | None = None,
             store: Store | None = None) -> ModelVersion:
    """Register the output of ``step`` in ``run`` as the next version of model ``name``
    of the run's project (a name is unique within a project, not across projects).

    Everything is checked before anything is written: a bad alias leaves no version behind.
    """
    _check_name("model name", name)
    if alias is not None:
        _check_name("alias", alias)
    st = _store(store)
    rec = st.get_run(run)
    tasks = {t.id: t for t in st.list_tasks(rec.id)}
    if step not in tasks:
        raise not_found("step", step, tasks, where=f"run {rec.id}")
    task = tasks[step]
    if task.state not in S.TASK_DONE or task.output is None:
        raise UserError(f"step {step!r} of run {rec.id} is {task.state}; only a finished step's "
                        "output can be registered", hint=f"see `insitu show {rec.id}`")
    now = time.time()
    project = rec.project
    if not st.select(ModelRecord, project=project, name=name):
        try:
            st.insert(ModelRecord(name=name, created_at=now, description=description,
                                  project=project))
        except Conflict:
            pass  # registered by someone else meanwhile
    lineage = _lineage(st, rec, task)
    output = task.output
    flavor = flavor_of_ref(output, lambda: _load_ref(output))
    for _ in range(20):  # versions are numbered without gaps; retry if another took ours
        versions = st.select(ModelVersionRecord, project=project, name=name)
        n = max((v.version for v in versions), default=0) + 1
        mv = ModelVersionRecord(name=name, version=n, run_id=rec.id, task_id=task.id,
                                output=task.output, created_at=now, description=description,
                                tags=dict(tags or {}), lineage=lineage, flavor=flavor,
                                project=project)
        try:
            st.insert(mv)
            break
        except Conflict:
            continue
    else:  # pragma: no cover - 20 concurrent registrations of one model
        raise Conflict(f"could not number a new version of {name!r}", hint="try again")
    if alias is not None:
        set_alias(name, alias, n, store=st, project=project)
    return get_version(f"{name}:{n}", store=st, project=project)


def _aliases(st: Store, project: str, name: str) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for a in st.select(AliasRecord, project=project, name=name):
        out.setdefault(a.version, []).append(a.alias)
    return out


def list_models(*, store: Store | None = None, project: str = DEFAULT_PROJECT
                ) -> list[ModelRecord]:
    return _store(store).select(ModelRecord, project=project)


def list_versions(name: str, *, store: Store | None = None, project: str = DEFAULT_PROJECT
                  ) -> list[ModelVersion]:
    _check_name("model name", name)  # no model can have a malformed name
    st = _store(store)
    if not st.select(ModelRecord, project=project, name=name):
        _unknown_model(st, project, name)
    al = _aliases(st, project, name)
    return [ModelVersion(v, tuple(sorted(al.get(v.version, []))))
            for v in st.select(ModelVersionRecord, project=project, name=name)]


def _unknown_model(st: Store, project: str, name: str) -> None:
    raise not_found("model", name, [m.name for m in st.select(ModelRecord, project=project)],
                    otherwise="register one with `insitu models register NAME --run RUN "
                              "--step STEP`")


def get_version(ref: str, *, store: Store | None = None, project: str = DEFAULT_PROJECT
                ) -> ModelVersion:
    """``"name@alias"``, ``"name:3"`` or ``"name"`` (the latest version), in ``project``."""
    st = _store(store)
    name, alias, number = ref, None, None
    if "@" in ref:
        name, alias = ref.split("@", 1)
    elif ":" in ref:
        name, num = ref.rsplit(":", 1)
        try:
            number = int(num)
        except ValueError:
            raise UserError(f"bad model reference {ref!r}",
                            hint="write NAME, NAME:VERSION or NAME@ALIAS") from None
    versions = {v.version: v for v in list_versions(name, store=st, project=project)}
    if alias is not None:
        hit = [a for a in st.select(AliasRecord, project=project, name=name, alias=alias)]
        if not hit:
            have = sorted({a.alias for a in st.select(AliasRecord, project=project,
                                                      name=name)})
            raise NotFound(f"model {name!r} has no alias {alias!r}",
                           hint=f"aliases: {', '.join(have)}" if have else
                           f"set one with `insitu models alias {name} {alias} VERSION`")
        number = hit[0].version
        if number not in versions:
            raise NotFound(f"alias {name}@{alias} points at version {number}, which no longer "
                           "exists", hint=f"move it: `insitu models alias {name} {alias} "
                           f"VERSION` (versions: {', '.join(map(str, sorted(versions)))})")
    if number is None:
        if not versions:
            raise NotFound(f"model {name!r} has no versions")
        number = max(versions)
    if number not in versions:
        raise NotFound(f"model {name!r} has no version {number}",
                       hint=f"versions: {', '.join(map(str, sorted(versions)))}")
    return versions[number]


def load(ref: str, *, store: Store | None = None, project: str = DEFAULT_PROJECT) -> Any:
    """The object a model version holds, e.g. ``load("fraud@champion")``."""
    return _load_ref(get_version(ref, store=store, project=project).record.output)


def _load_ref(output: dict[str, Any]) -> Any:
    from insitu.artifacts import ArtifactStore
    from insitu.artifacts import load as load_ref

    cfg = load_config()
    return load_ref(output, ArtifactStore(cfg.artifacts_url),
                    materialize_dir=str(cfg.home / "materialized"))


def set_alias(name: str, alias: str, version: int, *, store: Store | None = None,
              project: str = DEFAULT_PROJECT) -> None:
    """Point ``name@alias`` at ``version`` (one atomic write; it may have pointed elsewhere)."""
    _check_name("alias", alias)
    st = _store(store)
    get_version(f"{name}:{version}", store=st, project=project)
    st.put(AliasRecord(name=name, alias=alias, version=version, updated_at=time.time(),
                       project=project))


def delete_alias(name: str, alias: str, *, store: Store | None = None,
                 project: str = DEFAULT_PROJECT) -> None:
    st = _store(store)
    if not st.select(AliasRecord, project=project, name=name, alias=alias):
        raise NotFound(f"model {name!r} has no alias {alias!r}")
    st.delete(AliasRecord, project=project, name=name, alias=alias)


def delete_version(name: str, version: int, *, store: Store | None = None,
                   project: str = DEFAULT_PROJECT) -> None:
    st = _store(store)
    mv = get_version(f"{name}:{version}", store=st, project=project)
    if mv.aliases:
        raise Conflict(f"{name}:{version} is aliased as {', '.join(mv.aliases)}",
                       hint=f"move or delete the alias first (insitu models alias {name} "
                            f"{mv.aliases[0]} OTHER_VERSION)")
    st.delete(ModelVersionRecord, name=name, version=version)
