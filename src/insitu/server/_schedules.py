"""Schedules: a pipeline fired on a cron in a time zone, and what the API does with them.

Owns the checks of a schedule (cron, IANA time zone, catch-up policy), the tick arithmetic
(croniter, in the schedule's zone, DST handled), firing one tick (its record and its run in
one transaction, keyed so it is written once), the clock the scheduler reads, and the domain
functions of the schedule routes. The loop that fires due ticks is ``_schedule_loop.py``.

DST: a cron names wall-clock times in the schedule's zone. A time that does not exist (the
spring-forward gap) fires at the first time after it (02:30 -> 03:00, once). A time that
happens twice (fall back) fires once, at its first occurrence, unless the cron's hour field
is ``*`` (an hourly or finer cron then fires in both hours, as the real time passes).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import socket
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from insitu.engine import bind_params
from insitu.errors import Conflict, NotFound, UserError
from insitu.server._access import Principal
from insitu.server._domain import _project, audit, check_name
from insitu.server._remote_runs import check_package
from insitu.server._submit import run_records
from insitu.spec import validate_spec
from insitu.store import CATCHUP, ScheduleRecord, Store, TickRecord

MAX_CONCURRENT = 100
MAX_BACKFILL = 1000          # ticks one backfill may create
LATE_AFTER = 30.0            # catchup=none: a tick seen later than this after its time missed
_ALIASES = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_CRON_FIX = ("give five fields (minute hour day-of-month month day-of-week), e.g. "
             "'0 3 * * *' for 03:00 every day or '*/15 * * * *' every 15 minutes "
             "(or @hourly, @daily, @weekly, @monthly)")
_GOING = ("pending", "running")


# -- the clock ------------------------------------------------------------------------------

class Clock:
    """The scheduler's "now": the system clock, or (for tests, given by whoever starts the
    server with ``--clock-file``) the time written in a file. A client has no way to set it."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else None

    def now(self) -> float:
        if self.path is None:
            return time.time()
        text = self.path.read_text().strip()
        try:
            return float(text)
        except ValueError:
            pass
        try:
            return parse_time(text, "UTC")
        except UserError:
            raise UserError(f"the clock file {self.path} holds {text[:60]!r}, not a time",
                            hint="write seconds since the epoch or an ISO 8601 time, e.g. "
                                 "2026-03-29T01:00:00Z") from None


def server_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# -- checks ---------------------------------------------------------------------------------

def check_timezone(tz: str) -> ZoneInfo:
    try:
        if tz and "\x00" not in tz and not tz.startswith(("/", ".")):
            return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        pass
    near = difflib.get_close_matches(tz, sorted(available_timezones()), n=1, cutoff=0.6)
    maybe = f"did you mean {near[0]!r}? " if near else ""
    raise UserError(f"time zone {tz!r} is not an IANA time zone name",
                    hint=f"{maybe}use a name of the tz database such as 'Europe/Berlin', "
                         "'America/New_York' or 'UTC'")


def check_cron(cron: str) -> None:
    from croniter import CroniterBadDateError, croniter

    text = " ".join(cron.split())
    fields = text.split(" ")
    if text.startswith("@"):
        ok = text in _ALIASES
        reason = "it is not one of " + ", ".join(sorted(_ALIASES))
    elif len(fields) != 5:
        ok, reason = False, f"it has {len(fields)} field(s), not 5"
    else:
        try:
            croniter(text, datetime(2000, 1, 1)).get_next(float)  # 28 years hold every date
            ok, reason = True, ""
        except CroniterBadDateError:
            ok, reason = False, "no date matches it (e.g. 31 February)"
        except (ValueError, KeyError, TypeError) as e:  # croniter's errors are ValueErrors
            ok, reason = False, ("a field is out of range (minute 0-59, hour 0-23, day "
                                 "1-31, month 1-12, weekday 0-6)" if "range" in str(e) else
                                 "a field is not a number, name, range, list or step")
    if not ok:
        raise UserError(f"cron expression {cron!r} is not valid: {reason}", hint=_CRON_FIX)


def check_catchup(catchup: str) -> None:
    if catchup not in CATCHUP:
        raise UserError(f"catchup {catchup!r} is not one of {', '.join(CATCHUP)}",
                        hint="after downtime: 'latest' runs only the latest missed tick "
                             "(the default), 'all' runs every missed tick, 'none' runs none")


def parse_time(text: str, tz: str) -> float:
    """An ISO 8601 date or time; without an offset it is a wall time in ``tz``."""
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UserError(f"{text!r} is not an ISO 8601 date or time",
                        hint="write e.g. 2026-03-01 or 2026-03-01T03:00 (in the schedule's "
                             "time zone) or 2026-03-01T02:00:00Z") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=check_timezone(tz))
    if not 1970 < dt.year < 9999:
        raise UserError(f"{text!r} is out of range", hint="give a time between 1971 and 9998")
    return dt.timestamp()


def iso(at: float | None, tz: str) -> str | None:
    return None if at is None else datetime.fromtimestamp(at, ZoneInfo(tz)).isoformat()


# -- ticks ----------------------------------------------------------------------------------

def ticks_between(cron: str, tz: str, after: float, until: float, *,
                  limit: int = MAX_BACKFILL) -> list[float]:
    """The schedule's tick times in ``(after, until]``, oldest first, at most ``limit``."""
    from croniter import CroniterBadDateError, croniter

    zone = ZoneInfo(tz)
    text = " ".join(cron.split())
    hourly = text == "@hourly" or (not text.startswith("@") and text.split(" ")[1] == "*")
    it = croniter(text, datetime.fromtimestamp(after, zone))
    out: list[float] = []
    last = after
    while len(out) < limit:
        try:
            at = float(it.get_next(float))
        except CroniterBadDateError:  # no more dates match
            break
        if at > until:
            break
        if at <= last:  # croniter never goes back, but a tick is never repeated here
            continue
        last = at
        if not hourly and datetime.fromtimestamp(at, zone).fold:
            continue  # the second occurrence of a repeated wall time: the first one fired
        out.append(at)
    return out


def next_tick(s: ScheduleRecord, after: float) -> float | None:
    found = ticks_between(s.cron, s.timezone, after, after + 366 * 86400 * 5, limit=1)
    return found[0] if found else None


def cursor(store: Store, s: ScheduleRecord) -> float:
    """Ticks after this time have not been decided yet (fired or skipped)."""
    newest = store.list_ticks(s.project, s.name, limit=1)
    return max(s.start_at, newest[0].at) if newest else s.start_at


def going(store: Store, s: ScheduleRecord) -> list[str]:
    """The ids of this schedule's runs that have not ended."""
    out = []
    for state in _GOING:
        out += [r.id for r in store.list_runs(project=s.project, state=state)
                if (r.labels or {}).get("schedule") == s.name]
    return out


def fire(store: Store, s: ScheduleRecord, at: float, *, backend: str, kind: str = "cron",
         who: Principal | None = None, client: str | None = None) -> TickRecord:
    """Write tick ``at`` and its pending run in one transaction; :class:`Conflict` (and
    nothing written) when the tick was recorded already, by this server or another."""

    labels = {"schedule": s.name, "tick": iso(at, "UTC"), "trigger": kind}
    if s.package:
        labels["package"] = s.package
    values = bind_params(s.spec, s.params)
    run, tasks = run_records(s.spec, values, project=s.project, backend=backend,
                             labels=labels)
    tick = TickRecord(project=s.project, schedule=s.name, at=at, state="fired", kind=kind,
                      run_id=run.id, recorded_at=time.time(), by=server_id())
    store.insert(tick, run, *tasks,
                 audit(who, "run.submit", project=s.project, obj=f"run/{run.id}",
                       client=client, detail={"pipeline": run.pipeline, "labels": labels}))
    return tick


def skip(store: Store, s: ScheduleRecord, at: float, reason: str) -> TickRecord | None:
    """Record tick ``at`` as skipped, with why; None when it was recorded already."""
    tick = TickRecord(project=s.project, schedule=s.name, at=at, state="skipped",
                      reason=reason, recorded_at=time.time(), by=server_id())
    try:
        store.insert(tick)
    except Conflict:
        return None
    return tick


# -- the API's calls ------------------------------------------------------------------------

def _schedule(store: Store, project: str, name: str) -> ScheduleRecord:

    _project(store, project)
    found = store.select(ScheduleRecord, project=project, name=name)
    if not found:
        raise NotFound(f"project {project!r} has no schedule {name!r}",
                       hint=f"list them with GET /api/v1/projects/{project}/schedules "
                            "(insitu schedule ls)")
    return found[0]


def tick_view(t: TickRecord, tz: str) -> dict[str, Any]:
    return {**dataclasses.asdict(t), "time": iso(t.at, tz)}


def view(store: Store, s: ScheduleRecord, now: float, *, ticks: int | None = None
         ) -> dict[str, Any]:
    d = dataclasses.asdict(s)
    d.pop("spec")
    nxt = None if s.paused else next_tick(s, max(cursor(store, s), s.start_at))
    fired = store.list_ticks(s.project, s.name, limit=1, state="fired")
    last = fired[0] if fired else None
    d.update(next_fire_at=nxt, next_fire=iso(nxt, s.timezone),
             last_fire_at=last.at if last else None,
             last_fire=iso(last.at, s.timezone) if last else None,
             last_run_id=last.run_id if last else None,
             overdue=nxt is not None and nxt <= now)
    if ticks is not None:
        d["ticks"] = [tick_view(t, s.timezone)
                      for t in store.list_ticks(s.project, s.name, limit=ticks)]
    return d


def create(store: Store, who: Principal, project: str, *, name: str, spec: dict[str, Any],
           package: str | None, params: dict[str, Any], cron: str, tz: str, catchup: str,
           max_concurrent: int, paused: bool, now: float, client: str | None,
           files_of: Callable[[str], frozenset[str]]) -> dict[str, Any]:
    """Write a new schedule; its code package (``package``, a digest or None) must be on
    the server and hold every file the spec's functions name, as for a submitted run."""
    _project(store, project)
    check_name("schedule", name)
    check_cron(cron)
    check_timezone(tz)
    check_catchup(catchup)
    if not 1 <= max_concurrent <= MAX_CONCURRENT:
        raise UserError(f"max_concurrent={max_concurrent} is out of range",
                        hint=f"give 1 (the default: a tick is skipped while the previous "
                             f"run is going) up to {MAX_CONCURRENT}")
    validate_spec(spec, source=f"the spec of schedule {name!r}")
    bind_params(spec, params)  # a parameter error now, not at every tick
    package = check_package(spec, package, files_of)
    s = ScheduleRecord(project=project, name=name, pipeline=spec["name"], spec=spec,
                       cron=" ".join(cron.split()), timezone=tz, created_at=time.time(),
                       start_at=now, package=package, params=params, catchup=catchup,
                       max_concurrent=max_concurrent, paused=paused, created_by=who.user)
    try:
        store.insert(s, audit(who, "schedule.create", project=project,
                              obj=f"schedule/{name}", client=client,
                              detail={"cron": s.cron, "timezone": tz, "catchup": catchup,
                                      "max_concurrent": max_concurrent}))
    except Conflict:
        raise Conflict(f"project {project!r} has a schedule {name!r} already",
                       hint="choose another name, or delete it first "
                            f"(insitu schedule delete {name})") from None
    return view(store, s, now)


def list_schedules(store: Store, project: str, now: float) -> list[dict[str, Any]]:

    _project(store, project)
    return [view(store, s, now) for s in store.select(ScheduleRecord, project=project)]


def get(store: Store, project: str, name: str, now: float, *, ticks: int = 20
        ) -> dict[str, Any]:
    return view(store, _schedule(store, project, name), now, ticks=ticks)


def set_paused(store: Store, who: Principal, project: str, name: str, paused: bool,
               now: float, client: str | None) -> dict[str, Any]:
    """Pause, or resume: ticks that came due while it was paused are not fired."""

    s = _schedule(store, project, name)
    if s.paused != paused:
        s = dataclasses.replace(s, paused=paused,
                                start_at=s.start_at if paused else max(s.start_at, now))
        store.put(s, audit(who, "schedule.pause" if paused else "schedule.resume",
                           project=project, obj=f"schedule/{name}", client=client))
    return view(store, s, now)


def delete(store: Store, who: Principal, project: str, name: str,
           client: str | None) -> None:
    """Delete the schedule and its ticks; its runs stay (labelled with its name)."""

    _schedule(store, project, name)
    store.delete(ScheduleRecord, project=project, name=name)
    store.delete(TickRecord, project=project, schedule=name)
    store.put(audit(who, "schedule.delete", project=project, obj=f"schedule/{name}",
                    client=client))


def backfill(store: Store, who: Principal, project: str, name: str, *, start: str, end: str,
             backend: str, now: float, client: str | None) -> dict[str, Any]:
    """A run for every tick in [start, end] not recorded yet (max_concurrent does not
    apply: the range was asked for explicitly)."""
    s = _schedule(store, project, name)
    t0, t1 = parse_time(start, s.timezone), parse_time(end, s.timezone)
    if t1 < t0:
        raise UserError(f"backfill ends ({end}) before it starts ({start})",
                        hint="give --from before --to")
    if t1 > now:
        raise UserError(f"backfill reaches into the future ({end}; now is "
                        f"{iso(now, s.timezone)})",
                        hint="backfill only past ticks; future ones fire on their own")
    ats = ticks_between(s.cron, s.timezone, t0 - 1e-3, t1, limit=MAX_BACKFILL + 1)
    if len(ats) > MAX_BACKFILL:
        raise UserError(f"{start} .. {end} holds more than {MAX_BACKFILL} ticks of "
                        f"{s.cron!r}", hint="backfill a shorter range at a time")
    created, existing = [], []
    for at in ats:
        try:
            t = fire(store, s, at, backend=backend, kind="backfill", who=who, client=client)
            created.append({"at": at, "time": iso(at, s.timezone), "run_id": t.run_id})
        except Conflict:
            existing.append({"at": at, "time": iso(at, s.timezone)})
    return {"schedule": name, "created": created, "existing": existing}

