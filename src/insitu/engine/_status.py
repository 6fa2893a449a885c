"""A run as users see it: whether an engine still drives it, the state to show, and
cancelling it (through the same table of moves the engine uses)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence

from insitu.engine._moves import move, unchanged
from insitu.errors import UserError
from insitu.store import Record, RunRecord, Store
from insitu.store._states import INTERRUPTED, RUN_TERMINAL
from insitu.store._states import AttemptState as A
from insitu.store._states import RunState as R
from insitu.store._states import TaskState as T

STALE_AFTER_S = 15.0  # a heartbeat older than this means the engine is gone


def engine_alive(run: RunRecord, *, stale_after: float = STALE_AFTER_S) -> bool:
    """Is an engine still driving ``run``? (its process exists and its heartbeat is fresh)"""
    if run.state not in (R.RUNNING, R.PENDING) or run.engine_pid is None:
        return False
    if run.engine_host == socket.gethostname():
        try:
            os.kill(run.engine_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
    return run.heartbeat_at is not None and time.time() - run.heartbeat_at <= stale_after


def shown_state(run: RunRecord) -> str:
    """The run's state as every command shows it: a run left running or pending by an
    engine that is gone (killed, its machine down) is ``interrupted``; ``insitu resume``
    continues it."""
    if run.state in (R.RUNNING, R.PENDING) and run.engine_pid is not None \
            and not engine_alive(run):
        return INTERRUPTED
    return str(run.state)


def shown_task_state(run_state: str, task_state: str) -> str:
    """A task's state as shown: a task left running by a gone engine is interrupted too."""
    if run_state == INTERRUPTED and task_state == T.RUNNING:
        return INTERRUPTED
    return task_state


def cancel_run(store: Store, run_id: str, *, wait_s: float = 60.0,
               poll_s: float = 0.3, also: Sequence[Record] = ()) -> tuple[RunRecord, bool]:
    """Cancel a run; return its record and whether an engine was driving it.

    A live engine is asked (``cancel_requested``) and stops its attempts itself; this
    waits up to ``wait_s`` for the run to end (``wait_s=0``: ask and return). A run no
    engine drives is marked here: its running attempts and open tasks become cancelled,
    with the same checked moves the engine makes. A run already ended is returned as it is.
    ``also`` (e.g. an audit record) is written in the same transaction as the change.
    """
    rec = store.get_run(run_id)
    for _ in range(100):  # each lost race means another writer moved on: read again
        if rec.state in RUN_TERMINAL:
            return rec, False
        if not engine_alive(rec):
            now = time.time()
            recs: list[Record] = []
            for a in store.list_attempts(rec.id):
                if a.state == A.RUNNING:
                    recs.append(move(a, A.CANCELLED, ended_at=now,
                                     error={"kind": "cancelled", "message": "cancelled"}))
            for t in store.list_tasks(rec.id):
                if t.state in (T.PENDING, T.RUNNING):
                    recs.append(move(t, T.CANCELLED, ended_at=now))
            final = move(rec, R.CANCELLED, ended_at=now)
            # an engine that starts meanwhile finds the run changed, and leaves it ended
            if store.put_if(rec.id, unchanged(rec), *recs, final, *also):
                return final, False
        elif rec.cancel_requested:  # asked already: record this call, and wait alike
            if also:
                store.put(*also)
                also = ()
            break
        else:
            asked = move(rec, cancel_requested=True)
            if store.put_if(rec.id, unchanged(rec), asked, *also):
                also = ()
                if wait_s <= 0:
                    return asked, True
                break
        rec = store.get_run(rec.id)
    else:
        raise UserError(f"run {rec.id} changed 100 times while it was being cancelled",
                        hint="try `insitu cancel` again")
    if wait_s <= 0:
        return rec, True
    deadline = time.time() + wait_s
    while time.time() < deadline:
        cur = store.get_run(rec.id)
        if cur.state in RUN_TERMINAL:
            return cur, True
        if not engine_alive(cur):  # it died meanwhile: mark it here
            return cancel_run(store, rec.id, wait_s=0, also=also)
        time.sleep(poll_s)
    raise UserError(f"run {rec.id} did not stop within {wait_s:g}s",
                    hint=f"its engine is process {rec.engine_pid} on {rec.engine_host}; "
                         "stop it with kill, then `insitu cancel` again")


__all__ = ["STALE_AFTER_S", "cancel_run", "engine_alive", "shown_state", "shown_task_state"]
