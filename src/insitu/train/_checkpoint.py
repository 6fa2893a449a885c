"""Checkpoints of a step, in the artifact store: saved by rank 0, readable by every rank.

Contract:

- A checkpoint is a blob in the artifact store (content-addressed, written atomically by
  :class:`~insitu.artifacts.ArtifactStore`), made with ``torch.save`` of
  ``{"insitu": meta, "state": state}``; ``meta`` names the run, task, step and the training
  step number it was saved at.
- Each task of a run has an index, ``checkpoints/<run>/<task>.json`` under the store's root,
  rewritten whole and atomically (a temporary file and a rename; an object store writes
  whole objects): the checkpoints kept, oldest first. ``keep`` newest are kept; the blobs of
  the others are deleted.
- Rank 0 writes; every rank then waits at a barrier, so no rank runs past a checkpoint
  that is not stored yet. Every rank reads.
- A restarted attempt of the same task reads the index its earlier attempts wrote: that is
  how a gang resumes from its latest checkpoint.
"""

from __future__ import annotations

import io
import json
import os
import time
from dataclasses import dataclass
from typing import Any

from insitu.artifacts._store import ArtifactStore, artifact_store
from insitu.errors import CheckpointError, UserError
from insitu.train._context import context, current_step, require_torch


@dataclass(frozen=True, kw_only=True)
class Checkpoint:
    """A loaded checkpoint: the training ``step`` it was saved at and its ``state``."""

    step: int
    state: Any
    digest: str
    saved_by: str     # the pipeline step that saved it
    saved_at: float


def _index_path(store: ArtifactStore, run_id: str, task_id: str) -> str:
    return f"{store.root.rstrip('/')}/checkpoints/{run_id}/{task_id.replace('/', '_')}.json"


def read_index(store: ArtifactStore, run_id: str, task_id: str) -> list[dict[str, Any]]:
    """The checkpoints kept for a task, oldest first ([] if none)."""
    p = _index_path(store, run_id, task_id)
    try:
        if store.local:
            with open(p) as f:
                data = json.load(f)
        else:
            data = json.loads(store.fs.cat_file(p))
    except (OSError, ValueError, FileNotFoundError):
        return []
    return list(data.get("checkpoints", []))


def _write_index(store: ArtifactStore, run_id: str, task_id: str,
                 entries: list[dict[str, Any]]) -> None:
    store.write(_index_path(store, run_id, task_id),
                json.dumps({"checkpoints": entries}, indent=1).encode())


def list_checkpoints(artifacts_url: str, run_id: str) -> dict[str, list[dict[str, Any]]]:
    """Task id -> the checkpoints kept for it in run ``run_id`` (for ``insitu show``)."""
    store = artifact_store(artifacts_url)
    root = f"{store.root.rstrip('/')}/checkpoints/{run_id}"
    try:
        names = sorted(os.listdir(root)) if store.local else \
            sorted(os.path.basename(n) for n in store.fs.ls(root, detail=False))
    except (OSError, FileNotFoundError):
        return {}
    out = {}
    for n in names:
        if n.endswith(".json") and not n.startswith("."):
            task = n.removesuffix(".json")
            entries = read_index(store, run_id, task)
            if entries:
                out[task] = entries
    return out


def delete_checkpoints(artifacts_url: str, run_id: str) -> int:
    """Delete the checkpoints of run ``run_id`` (their blobs, then their indexes), when the
    run is deleted; returns how many there were."""
    store = artifact_store(artifacts_url)
    found = list_checkpoints(artifacts_url, run_id)
    for task, entries in found.items():
        for e in entries:
            _remove_blob(store, e["digest"])
        p = _index_path(store, run_id, task)
        try:
            if store.local:
                os.unlink(p)
            else:
                store.fs.rm(p)
        except (OSError, FileNotFoundError):
            pass
    if store.local:
        try:
            os.rmdir(f"{store.root.rstrip('/')}/checkpoints/{run_id}")
        except OSError:
            pass
    return sum(len(e) for e in found.values())


def _remove_blob(store: ArtifactStore, digest: str) -> None:
    try:
        if store.local:
            os.unlink(store.path(digest))
        else:
            store.fs.rm(store.path(digest))
    except (OSError, FileNotFoundError):
        pass


def _where() -> tuple[ArtifactStore, Any]:
    s = current_step()
    if s is None:
        raise UserError("insitu.train checkpoints are saved and loaded inside a step",
                        hint="call save_checkpoint/load_checkpoint in a function decorated "
                             "with @insitu.step")
    return artifact_store(s.artifacts_url), s


def _barrier() -> None:
    try:
        import torch.distributed as dist
    except ImportError:
        return
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def save_checkpoint(state: Any, *, step: int, keep: int = 3) -> dict[str, Any] | None:
    """Save ``state`` (e.g. ``{"model": m.state_dict(), "optim": o.state_dict()}``) as the
    checkpoint of training step ``step``; keep the newest ``keep``. Rank 0 writes, every
    rank waits until it is stored. Returns the index entry (None on other ranks)."""
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise UserError(f"save_checkpoint: step must be a whole number >= 0, got {step!r}")
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise UserError(f"save_checkpoint: keep must be a whole number >= 1, got {keep!r}")
    store, s = _where()
    entry = None
    if context().rank == 0:
        torch = require_torch()
        buf = io.BytesIO()
        meta = {"run_id": s.run_id, "task_id": s.task_id, "step_id": s.step_id,
                "step": step, "attempt": s.attempt, "saved_at": time.time()}
        torch.save({"insitu": meta, "state": state}, buf)
        data = buf.getvalue()
        digest = store.put(data)
        entry = {"step": step, "digest": digest, "size": len(data), "attempt": s.attempt,
                 "saved_at": meta["saved_at"], "step_id": s.step_id}
        entries = [e for e in read_index(store, s.run_id, s.task_id) if e["step"] != step]
        entries.append(entry)
        entries.sort(key=lambda e: (e["step"], e["saved_at"]))
        kept, dropped = entries[-keep:], entries[:-keep]
        _write_index(store, s.run_id, s.task_id, kept)
        live = {e["digest"] for e in kept}
        for e in dropped:  # retention: the blobs of checkpoints no longer kept
            if e["digest"] not in live:
                _remove_blob(store, e["digest"])
    _barrier()
    return entry


def load_checkpoint(into: dict[str, Any] | None = None, *,
                    checkpoint: dict[str, Any] | None = None,
                    allow_other_step: bool = False) -> Checkpoint | None:
    """The latest checkpoint of this task (or ``checkpoint``, an entry of another run's
    index), or None if there is none yet. ``into`` maps names of the saved state to objects
    with ``load_state_dict`` (a model, an optimiser), which are loaded from it; a state
    that does not fit raises :class:`CheckpointError` naming what differs."""
    store, s = _where()
    torch = require_torch()
    if checkpoint is None:
        entries = read_index(store, s.run_id, s.task_id)
        if not entries:
            return None
        checkpoint = entries[-1]
    digest = checkpoint["digest"]
    if not store.exists(digest):
        raise CheckpointError(f"checkpoint of step {checkpoint.get('step')} ({digest[:12]}) is "
                              f"no longer in the artifact store {store.url}",
                              hint="it was removed past its retention (keep=); load a newer "
                                   "one")
    with store.open(digest) as f:
        blob = torch.load(f, map_location="cpu", weights_only=False)
    if not isinstance(blob, dict) or "insitu" not in blob:
        raise CheckpointError(f"blob {digest[:12]} is not an insitu checkpoint",
                              hint="load checkpoints saved with insitu.train.save_checkpoint")
    meta = blob["insitu"]
    if meta.get("step_id") != s.step_id and not allow_other_step:
        raise CheckpointError(
            f"checkpoint {digest[:12]} was saved by step '{meta.get('step_id')}' (run "
            f"{meta.get('run_id')}), not by this step '{s.step_id}'",
            hint="load a checkpoint this step saved, or pass allow_other_step=True to take "
                 "its state anyway")
    state = blob["state"]
    if into:
        _load_into(into, state, meta)
    return Checkpoint(step=int(meta["step"]), state=state, digest=digest,
                      saved_by=str(meta.get("step_id")), saved_at=float(meta["saved_at"]))


def _load_into(into: dict[str, Any], state: Any, meta: dict[str, Any]) -> None:
    where = f"checkpoint of step '{meta.get('step_id')}' at training step {meta.get('step')}"
    if not isinstance(state, dict):
        raise CheckpointError(f"{where} holds a {type(state).__name__}, not a dict of states",
                              hint="save a dict such as {'model': model.state_dict()}")
    missing = sorted(set(into) - set(state))
    if missing:
        raise CheckpointError(f"{where} has no state named {', '.join(map(repr, missing))} "
                              f"(it has {', '.join(map(repr, sorted(state)))})",
                              hint="load the names it was saved with")
    for name, obj in into.items():
        try:
            obj.load_state_dict(state[name])
        except (RuntimeError, ValueError, KeyError) as e:
            first = str(e).strip().splitlines()
            detail = "; ".join(line.strip() for line in first[:4])
            raise CheckpointError(f"{where}: state {name!r} does not fit "
                                  f"{type(obj).__name__}: {detail}",
                                  hint="load it into the same model architecture it was "
                                       "saved from, or start without this checkpoint") from None
