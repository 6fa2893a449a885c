"""What each API call does, given the store and the caller. Routes stay thin; every change
is written together with its audit record in one ``Store.put`` (one transaction)."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
import secrets
import time
from typing import Any

from insitu.engine import cancel_run as engine_cancel
from insitu.engine import shown_state
from insitu.errors import Conflict, NotFound, PermissionDenied, Unauthenticated, UserError
from insitu.server import _tokens
from insitu.server._access import Principal, no_project
from insitu.store import (
    ROLES,
    AuditRecord,
    MemberRecord,
    ProjectRecord,
    RunRecord,
    Store,
    TokenRecord,
    UserRecord,
)

DEFAULT_PROJECT = "default"
MAX_TOKEN_DAYS = 3650.0
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def check_name(what: str, name: str) -> None:
    if not _NAME.match(name):
        raise UserError(f"{what} name {name!r} is not valid",
                        hint="use 1-63 lowercase letters, digits, '.', '_' or '-', starting "
                             "with a letter or digit (e.g. 'vision')")


def audit(who: Principal | None, action: str, *, outcome: str = "ok",
          project: str | None = None, obj: str | None = None, client: str | None = None,
          detail: dict[str, Any] | None = None) -> AuditRecord:
    now = time.time()
    return AuditRecord(id=f"{int(now * 1e6):017d}-{secrets.token_hex(4)}", at=now,
                       action=action, outcome=outcome, user=who.user if who else None,
                       token=who.token if who else None, project=project, object=obj,
                       client=client, detail=detail or {})


# -- authentication -------------------------------------------------------------------------

def authenticate(store: Store, header: str | None, *, now: float | None = None) -> Principal:
    """The caller behind an ``Authorization: Bearer`` header; :class:`Unauthenticated` for
    none, a malformed, unknown, expired or revoked token, or a token of a removed user."""
    fix = "send 'Authorization: Bearer <token>' with a token from `insitu server init` or " \
          "POST /api/v1/tokens"
    if not header:
        raise Unauthenticated("this needs an API token", hint=fix)
    scheme, _, value = header.partition(" ")
    parsed = _tokens.parse(value.strip()) if scheme.lower() == "bearer" else None
    if parsed is None:
        raise Unauthenticated("the API token is malformed", hint=fix)
    tid, secret = parsed
    # the token, its user and the user's roles in one query, read afresh on every request:
    # a revoked token, a removed user or a changed role takes effect at the next request
    found = store.token_holder(tid)
    if found is None or not _tokens.matches(secret, found[0].digest):
        raise Unauthenticated("the API token is not known", hint=fix)
    tok, user, members = found
    now = time.time() if now is None else now
    if tok.revoked_at is not None:
        raise Unauthenticated(f"the API token {tok.id} was revoked", hint=fix)
    if tok.expires_at is not None and tok.expires_at <= now:
        raise Unauthenticated(f"the API token {tok.id} has expired", hint=fix)
    if user is None:
        raise Unauthenticated(f"the API token {tok.id} belongs to no user", hint=fix)
    return Principal(user=tok.user, admin=user.admin, token=tok.id, scope=tok.project,
                     roles={m.project: m.role for m in members})


# -- set-up ---------------------------------------------------------------------------------

def initialise(store: Store, admin: str = "admin") -> tuple[UserRecord, str]:
    """Create the first administrator, the ``default`` project and a token; return the
    token, which is shown once. :class:`Conflict` if an administrator exists already."""
    check_name("user", admin)
    if any(u.admin for u in store.select(UserRecord)):
        raise Conflict("this server already has an administrator",
                       hint="ask an administrator for a token (POST /api/v1/tokens)")
    now = time.time()
    user = UserRecord(name=admin, created_at=now, admin=True)
    tid, token, dig = _tokens.mint()
    recs: list[Any] = [user, TokenRecord(id=tid, user=admin, digest=dig, created_at=now,
                                         name="initial admin token")]
    if not store.select(ProjectRecord, name=DEFAULT_PROJECT):
        recs.append(ProjectRecord(name=DEFAULT_PROJECT, created_at=now,
                                  description="runs made without a project"))
    recs.append(MemberRecord(project=DEFAULT_PROJECT, user=admin, role="owner"))
    recs.append(audit(None, "server.init", obj=f"user/{admin}"))
    store.put(*recs)
    return user, token


# -- projects and members -------------------------------------------------------------------

def _project(store: Store, name: str) -> ProjectRecord:
    found = store.select(ProjectRecord, name=name)
    if not found:
        raise no_project(name)
    return found[0]


def list_projects(store: Store, who: Principal) -> list[dict[str, Any]]:
    out = []
    for p in store.select(ProjectRecord):
        role = who.role_in(p.name)
        if role is not None:
            out.append({**dataclasses.asdict(p), "role": role})
    return out


def get_project(store: Store, who: Principal, name: str) -> dict[str, Any]:
    return {**dataclasses.asdict(_project(store, name)), "role": who.role_in(name)}


def create_project(store: Store, who: Principal, name: str, description: str,
                   owner: str | None, client: str | None) -> dict[str, Any]:
    check_name("project", name)
    if store.select(ProjectRecord, name=name):
        raise Conflict(f"project {name!r} exists already", hint="choose another name")
    owner = owner or who.user
    if not store.select(UserRecord, name=owner):
        raise NotFound(f"no user {owner!r}", hint="create the user first (POST /api/v1/users)")
    p = ProjectRecord(name=name, created_at=time.time(), description=description)
    store.put(p, MemberRecord(project=name, user=owner, role="owner"),
              audit(who, "project.create", project=name, obj=f"project/{name}", client=client,
                    detail={"owner": owner}))
    return dataclasses.asdict(p)


def delete_project(store: Store, who: Principal, name: str, client: str | None) -> None:
    _project(store, name)
    if name == DEFAULT_PROJECT:
        raise Conflict("the default project cannot be deleted", hint="delete its runs instead")
    if store.list_runs(project=name, limit=1):
        raise Conflict(f"project {name!r} still holds runs",
                       hint="delete its runs first (insitu delete RUN)")
    store.delete(MemberRecord, project=name)
    store.delete(ProjectRecord, name=name)
    store.put(audit(who, "project.delete", project=name, obj=f"project/{name}",
                    client=client))


def list_members(store: Store, name: str) -> list[dict[str, Any]]:
    _project(store, name)
    return [dataclasses.asdict(m) for m in store.select(MemberRecord, project=name)]


def set_member(store: Store, who: Principal, project: str, user: str, role: str,
               client: str | None) -> dict[str, Any]:
    _project(store, project)
    if role not in ROLES:
        raise UserError(f"role {role!r} is not one of {', '.join(ROLES)}",
                        hint="viewer reads, editor also submits and cancels, owner also "
                             "manages members")
    if not store.select(UserRecord, name=user):
        raise NotFound(f"no user {user!r}", hint="an administrator creates users "
                                                 "(POST /api/v1/users)")
    m = MemberRecord(project=project, user=user, role=role)
    store.put(m, audit(who, "member.set", project=project, obj=f"member/{user}",
                       client=client, detail={"role": role}))
    return dataclasses.asdict(m)


def remove_member(store: Store, who: Principal, project: str, user: str,
                  client: str | None) -> None:
    _project(store, project)
    found = store.select(MemberRecord, project=project, user=user)
    if not found:
        raise NotFound(f"project {project!r} has no member {user!r}",
                       hint=f"list them with GET /api/v1/projects/{project}/members")
    owners = [m for m in store.select(MemberRecord, project=project) if m.role == "owner"]
    if found[0].role == "owner" and len(owners) == 1:
        raise Conflict(f"{user!r} is the last owner of {project!r}",
                       hint="make another member owner first")
    store.delete(MemberRecord, project=project, user=user)
    store.put(audit(who, "member.remove", project=project, obj=f"member/{user}",
                    client=client))


# -- users and tokens -----------------------------------------------------------------------

def list_users(store: Store) -> list[dict[str, Any]]:
    return [dataclasses.asdict(u) for u in store.select(UserRecord)]


def create_user(store: Store, who: Principal, name: str, admin: bool, service: bool,
                email: str | None, client: str | None) -> dict[str, Any]:
    check_name("user", name)
    if store.select(UserRecord, name=name):
        raise Conflict(f"user {name!r} exists already", hint="choose another name")
    u = UserRecord(name=name, created_at=time.time(), admin=admin, service=service,
                   email=email)
    store.put(u, audit(who, "user.create", obj=f"user/{name}", client=client,
                       detail={"admin": admin, "service": service}))
    return dataclasses.asdict(u)


def _token_view(t: TokenRecord) -> dict[str, Any]:
    d = dataclasses.asdict(t)
    d.pop("digest")
    return d


def list_tokens(store: Store, who: Principal) -> list[dict[str, Any]]:
    toks = store.select(TokenRecord) if who.acts_as_admin else \
        store.select(TokenRecord, user=who.user)
    return [_token_view(t) for t in toks]


def create_token(store: Store, who: Principal, *, name: str, user: str | None,
                 project: str | None, expires_in_days: float, client: str | None
                 ) -> dict[str, Any]:
    owner = user or who.user
    if owner != who.user and not who.acts_as_admin:
        raise PermissionDenied("only an administrator makes tokens for another user",
                               hint="leave out 'user' to make a token for yourself")
    if not 0 < expires_in_days <= MAX_TOKEN_DAYS:
        raise UserError(f"expires_in_days={expires_in_days:g} is out of range",
                        hint=f"give a number of days above 0 and at most {MAX_TOKEN_DAYS:g}")
    if not store.select(UserRecord, name=owner):
        raise NotFound(f"no user {owner!r}", hint="create the user first (POST /api/v1/users)")
    if project is not None:
        _project(store, project)
        if who.scope is not None and who.scope != project:
            raise no_project(project)
        owner_roles = {m.project for m in store.select(MemberRecord, user=owner)}
        if project not in owner_roles and not (owner == who.user and who.acts_as_admin):
            raise no_project(project) if owner == who.user else UserError(
                f"{owner!r} is not a member of {project!r}",
                hint=f"add them first (PUT /api/v1/projects/{project}/members/{owner})")
    elif who.scope is not None:
        project = who.scope  # a scoped token never makes a wider one
    now = time.time()
    tid, token, dig = _tokens.mint()
    rec = TokenRecord(id=tid, user=owner, digest=dig, created_at=now, name=name,
                      project=project, expires_at=now + expires_in_days * 86400)
    store.put(rec, audit(who, "token.create", project=project, obj=f"token/{tid}",
                         client=client, detail={"user": owner}))
    return {**_token_view(rec), "token": token}


def revoke_token(store: Store, who: Principal, token_id: str, client: str | None) -> None:
    found = store.select(TokenRecord, id=token_id)
    if not found or (found[0].user != who.user and not who.acts_as_admin):
        raise NotFound(f"no token {token_id!r}", hint="list yours with GET /api/v1/tokens")
    if found[0].revoked_at is None:
        store.put(dataclasses.replace(found[0], revoked_at=time.time()),
                  audit(who, "token.revoke", project=found[0].project,
                        obj=f"token/{token_id}", client=client))


# -- runs -----------------------------------------------------------------------------------

def encode_cursor(run: RunRecord) -> str:
    raw = json.dumps([run.created_at, run.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        at, rid = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return float(at), str(rid)
    except (ValueError, TypeError, binascii.Error):
        raise UserError(f"cursor {cursor[:40]!r} is not one this server gave out",
                        hint="pass the next_cursor of the previous page unchanged") from None


_RUN_HIDDEN = ("spec", "engine_pid", "engine_host")


def run_view(run: RunRecord) -> dict[str, Any]:
    """What the API shows of a run (records are immutable: its values need no copy)."""
    d = dict(vars(run))
    for name in _RUN_HIDDEN:
        del d[name]
    d["state"] = shown_state(run)  # a run whose engine is gone is "interrupted", as everywhere
    return d


def list_runs(store: Store, project: str, *, pipeline: str | None, state: str | None,
              limit: int, cursor: str | None, until: float | None = None,
              schedule: str | None = None) -> dict[str, Any]:
    try:
        before = decode_cursor(cursor) if cursor else None
    except UserError:
        _project(store, project)  # an unknown project is what is answered first
        raise
    if until is not None and (before is None or until < before[0]):
        before = (until, "")  # created before ``until``: the same seek on the index
    runs = store.list_runs(project=project, pipeline=pipeline, state=state, limit=limit + 1,
                           before=before, schedule=schedule,
                           with_spec=False)  # the view shows no spec
    if not runs:  # runs in it show the project exists; without any, look
        _project(store, project)
    page = runs[:limit]
    nxt = encode_cursor(page[-1]) if len(runs) > limit else None
    return {"items": [run_view(r) for r in page], "next_cursor": nxt}


def _run(store: Store, project: str, run_id: str) -> RunRecord:
    try:
        run = store.get_run(run_id)
    except NotFound:
        run = None
    if run is None or run.project != project:
        _project(store, project)  # an unknown project is what is answered first
        raise NotFound(f"project {project!r} has no run {run_id!r}",
                       hint=f"list them with GET /api/v1/projects/{project}/runs")
    return run


def get_run(store: Store, project: str, run_id: str) -> dict[str, Any]:
    run = _run(store, project, run_id)
    tasks = [{"id": t.id, "step": t.step_id, "state": t.state, "attempts": t.attempts,
              "node": t.node, "started_at": t.started_at, "ended_at": t.ended_at,
              "error": t.error} for t in store.list_tasks(run.id)]
    return {**run_view(run), "tasks": tasks}


def cancel_run(store: Store, who: Principal, project: str, run_id: str,
               client: str | None) -> dict[str, Any]:
    run = _run(store, project, run_id)
    if run.state in ("succeeded", "failed", "cancelled"):
        raise Conflict(f"run {run.id} has already ended ({run.state})",
                       hint="nothing to cancel")
    rec, live = engine_cancel(store, run.id, wait_s=0, also=[
        audit(who, "run.cancel", project=project, obj=f"run/{run.id}", client=client)])
    return {"id": rec.id, "state": shown_state(rec), "cancel_requested": live}


def list_audit(store: Store, *, project: str | None, user: str | None, action: str | None,
               since: float | None, until: float | None, cursor: str | None,
               limit: int) -> dict[str, Any]:
    recs = store.list_audit(project=project, user=user, action=action, since=since,
                            until=until, before=cursor, limit=limit + 1)
    page = recs[:limit]
    return {"items": [dataclasses.asdict(r) for r in page],
            "next_cursor": page[-1].id if len(recs) > limit else None}
