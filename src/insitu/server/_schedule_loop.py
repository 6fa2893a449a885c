"""The loop that fires schedules' due ticks, in the server process (one thread).

Every ``interval`` seconds it reads the clock (the system's, or ``--clock-file``'s) and,
for each schedule not paused, decides the ticks that came due since the last decided one:

- catch-up after downtime: ``latest`` fires only the newest due tick, ``all`` fires every
  one, ``none`` fires one only if it is at most 30 s (or three intervals) late; the others
  are recorded as skipped, with why (the newest :data:`KEEP_SKIPPED` of them);
- overlap: a tick that finds ``max_concurrent`` runs of the schedule still going is
  recorded as skipped, naming them;
- a fired tick's record and its pending run are written in one transaction keyed by
  (project, schedule, tick time), so two servers or a restart never fire a tick twice:
  whoever writes it second gets a conflict and moves on.

The server's supervisor runs the pending runs.
"""

from __future__ import annotations

import logging
import threading

from insitu.errors import Conflict, UserError
from insitu.server import _schedules as S
from insitu.store import ScheduleRecord, Store

log = logging.getLogger("insitu.server.schedules")
KEEP_SKIPPED = 100      # missed ticks recorded one by one after downtime (the newest)
MAX_PER_PASS = 1000     # ticks decided per schedule per pass (the rest on the next ones)


def decide(store: Store, s: ScheduleRecord, now: float, *, backend: str,
           late_after: float = S.LATE_AFTER) -> list[str]:
    """Fire or skip ``s``'s ticks due at ``now``; return one line per tick decided here."""
    due = S.ticks_between(s.cron, s.timezone, S.cursor(store, s), now, limit=MAX_PER_PASS)
    if not due:
        return []
    if s.catchup == "all":
        fire, missed = due, []
    elif s.catchup == "latest":
        fire, missed = due[-1:], due[:-1]
    else:
        late = now - due[-1] > late_after
        fire, missed = ([], due) if late else (due[-1:], due[:-1])
    out = []
    for at in missed[-KEEP_SKIPPED:]:
        why = (f"missed: the server was not running at its time; catchup={s.catchup} "
               + ("runs only the latest missed tick" if s.catchup == "latest"
                  else "runs no missed tick"))
        if S.skip(store, s, at, why):
            out.append(f"{s.project}/{s.name} tick {S.iso(at, 'UTC')} skipped ({why})")
    for at in fire:
        busy = S.going(store, s)
        if len(busy) >= s.max_concurrent:
            why = (f"overlap: {len(busy)} run(s) of this schedule still going "
                   f"({', '.join(busy[:5])}); max_concurrent={s.max_concurrent}")
            if S.skip(store, s, at, why):
                out.append(f"{s.project}/{s.name} tick {S.iso(at, 'UTC')} skipped ({why})")
            continue
        try:
            tick = S.fire(store, s, at, backend=backend)
        except Conflict:
            out.append(f"{s.project}/{s.name} tick {S.iso(at, 'UTC')} already recorded "
                       "(by another server)")
            continue
        except UserError as e:  # e.g. the spec no longer binds its parameters
            S.skip(store, s, at, f"error: {e.message}")
            out.append(f"{s.project}/{s.name} tick {S.iso(at, 'UTC')} skipped ({e.message})")
            continue
        out.append(f"{s.project}/{s.name} tick {S.iso(at, 'UTC')} fired run {tick.run_id}")
    return out


class ScheduleLoop:
    """A daemon thread deciding due ticks every ``interval`` seconds until :meth:`stop`."""

    def __init__(self, store: Store, *, backend: str, clock: S.Clock,
                 interval: float = 5.0) -> None:
        self.store, self.backend, self.clock, self.interval = store, backend, clock, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="insitu-schedules",
                                        daemon=True)

    def start(self) -> None:
        if not log.handlers and not logging.getLogger().handlers:  # say what fired, on stderr
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            log.addHandler(handler)
            log.setLevel(logging.INFO)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def run_once(self) -> list[str]:
        now = self.clock.now()
        out = []
        for s in self.store.select(ScheduleRecord, paused=False):
            try:
                out += decide(self.store, s, now, backend=self.backend,
                              late_after=max(S.LATE_AFTER, 3 * self.interval))
            except Exception:  # noqa: BLE001 - one schedule's failure stops no other
                log.exception("schedule %s/%s: deciding its ticks failed", s.project, s.name)
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for line in self.run_once():
                    log.info("schedule %s", line)
            except Exception:  # noqa: BLE001 - the database may be back on the next pass
                log.exception("the schedule loop failed; trying again in %.1f s",
                              self.interval)
            self._stop.wait(self.interval)
