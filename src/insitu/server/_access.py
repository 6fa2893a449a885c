"""Who may call what: the route table, as data, and the one function that applies it.

Every API route has exactly one entry in :data:`ACCESS` (a test generated from the app's
routes fails for a route without one, and such a route answers 500 rather than run). A rule
is ``public``, ``user`` (any valid token), ``admin``, or a project role (``viewer`` <
``editor`` < ``owner``) on the route's ``{project}``. A caller with no role in that project
gets the same 404 as for a project that does not exist, so names do not leak. A token
scoped to one project acts only there, and never with administrator rights.
"""

from __future__ import annotations

from dataclasses import dataclass

from insitu.errors import NotFound, PermissionDenied
from insitu.store import ROLES

PUBLIC, USER, ADMIN = "public", "user", "admin"
VIEWER, EDITOR, OWNER = ROLES

API = "/api/v1"
ACCESS: dict[tuple[str, str], str] = {
    ("GET", f"{API}/health"): PUBLIC,
    ("GET", f"{API}/whoami"): USER,
    ("GET", f"{API}/auth/login"): PUBLIC,
    ("GET", f"{API}/auth/callback"): PUBLIC,
    ("POST", f"{API}/auth/logout"): USER,
    ("POST", f"{API}/auth/session"): USER,
    ("GET", f"{API}/projects"): USER,
    ("POST", f"{API}/projects"): ADMIN,
    ("GET", f"{API}/projects/{{project}}"): VIEWER,
    ("DELETE", f"{API}/projects/{{project}}"): OWNER,
    ("GET", f"{API}/projects/{{project}}/members"): VIEWER,
    ("PUT", f"{API}/projects/{{project}}/members/{{user}}"): OWNER,
    ("DELETE", f"{API}/projects/{{project}}/members/{{user}}"): OWNER,
    ("GET", f"{API}/projects/{{project}}/runs"): VIEWER,
    ("GET", f"{API}/projects/{{project}}/runs/{{run_id}}"): VIEWER,
    ("POST", f"{API}/projects/{{project}}/runs/{{run_id}}/cancel"): EDITOR,
    ("GET", f"{API}/projects/{{project}}/audit"): OWNER,
    ("GET", f"{API}/projects/{{project}}/quota"): VIEWER,
    ("PUT", f"{API}/projects/{{project}}/quota"): OWNER,
    ("DELETE", f"{API}/projects/{{project}}/quota"): OWNER,
    ("GET", f"{API}/users"): ADMIN,
    ("POST", f"{API}/users"): ADMIN,
    ("GET", f"{API}/tokens"): USER,
    ("POST", f"{API}/tokens"): USER,
    ("DELETE", f"{API}/tokens/{{token_id}}"): USER,
    ("GET", f"{API}/audit"): ADMIN,
    ("GET", "/metrics"): ADMIN,
    # schedules: viewers read them, editors make, pause, resume, delete and backfill them
    ("GET", f"{API}/projects/{{project}}/schedules"): VIEWER,
    ("POST", f"{API}/projects/{{project}}/schedules"): EDITOR,
    ("GET", f"{API}/projects/{{project}}/schedules/{{name}}"): VIEWER,
    ("POST", f"{API}/projects/{{project}}/schedules/{{name}}/pause"): EDITOR,
    ("POST", f"{API}/projects/{{project}}/schedules/{{name}}/resume"): EDITOR,
    ("DELETE", f"{API}/projects/{{project}}/schedules/{{name}}"): EDITOR,
    ("POST", f"{API}/projects/{{project}}/schedules/{{name}}/backfill"): EDITOR,
    # what a run shows beyond its record (server/_routes_read.py)
    ("GET", f"{API}/projects/{{project}}/runs/{{run_id}}/steps"): VIEWER,
    ("GET", f"{API}/projects/{{project}}/runs/{{run_id}}/graph"): VIEWER,
    ("GET", f"{API}/projects/{{project}}/runs/{{run_id}}/data"): VIEWER,
    ("GET", f"{API}/projects/{{project}}/runs/{{run_id}}/attempts"): VIEWER,
    ("GET", f"{API}/projects/{{project}}/runs/{{run_id}}/steps/{{task_id}}/attempts"): VIEWER,
    ("GET", f"{API}/projects/{{project}}/runs/{{run_id}}/logs"): VIEWER,
    ("GET", f"{API}/projects/{{project}}/runs/{{run_id}}/logs/stream"): VIEWER,
    ("GET", f"{API}/projects/{{project}}/runs/{{run_id}}/explain"): VIEWER,
    ("GET", f"{API}/projects/{{project}}/runs/{{run_id}}/why"): VIEWER,
    ("GET", f"{API}/projects/{{project}}/runs/{{run_id}}/metrics"): VIEWER,
    ("GET", f"{API}/projects/{{project}}/runs/{{run_id}}/artifacts"): VIEWER,
    ("GET", f"{API}/projects/{{project}}/runs/{{run_id}}/artifacts/{{digest}}"): VIEWER,
    ("GET", f"{API}/projects/{{project}}/runs/{{run_id}}/artifacts/{{digest}}/preview"): VIEWER,
    ("GET", f"{API}/projects/{{project}}/runs/{{run_id}}/studies/{{step}}"): VIEWER,
    ("GET", f"{API}/projects/{{project}}/models"): VIEWER,
    ("GET", f"{API}/projects/{{project}}/models/{{name}}"): VIEWER,
    ("GET", f"{API}/projects/{{project}}/models/{{name}}/versions/{{version}}"): VIEWER,
    ("POST", f"{API}/projects/{{project}}/models/{{name}}/versions"): EDITOR,
    ("PUT", f"{API}/projects/{{project}}/models/{{name}}/aliases/{{alias}}"): EDITOR,
    ("DELETE", f"{API}/projects/{{project}}/models/{{name}}/aliases/{{alias}}"): EDITOR,
    ("DELETE", f"{API}/projects/{{project}}/models/{{name}}/versions/{{version}}"): OWNER,
    ("GET", f"{API}/projects/{{project}}/datasets"): VIEWER,
    ("GET", f"{API}/projects/{{project}}/datasets/{{name}}"): VIEWER,
    ("GET", f"{API}/projects/{{project}}/studies"): VIEWER,
    ("GET", f"{API}/cluster"): USER,
    # running code on the server (_routes_runs.py)
    ("PUT", f"{API}/projects/{{project}}/packages/{{digest}}"): EDITOR,
    ("GET", f"{API}/projects/{{project}}/packages/{{digest}}"): VIEWER,
    ("POST", f"{API}/projects/{{project}}/runs"): EDITOR,
    ("POST", f"{API}/projects/{{project}}/runs/{{run_id}}/resume"): EDITOR,
    ("POST", f"{API}/projects/{{project}}/runs/{{run_id}}/rerun"): EDITOR,
    ("DELETE", f"{API}/projects/{{project}}/runs/{{run_id}}"): OWNER,
    # endpoints (_routes_endpoints.py): viewers read them and call the model; editors
    # create, change, move traffic and delete
    ("GET", f"{API}/projects/{{project}}/endpoints"): VIEWER,
    ("POST", f"{API}/projects/{{project}}/endpoints"): EDITOR,
    ("GET", f"{API}/projects/{{project}}/endpoints/{{name}}"): VIEWER,
    ("PATCH", f"{API}/projects/{{project}}/endpoints/{{name}}"): EDITOR,
    ("DELETE", f"{API}/projects/{{project}}/endpoints/{{name}}"): EDITOR,
    ("GET", f"{API}/projects/{{project}}/endpoints/{{name}}/logs"): VIEWER,
    ("PUT", f"{API}/projects/{{project}}/endpoints/{{name}}/traffic"): EDITOR,
    ("POST", f"{API}/projects/{{project}}/endpoints/{{name}}/promote"): EDITOR,
    ("POST", f"{API}/projects/{{project}}/endpoints/{{name}}/rollback"): EDITOR,
    ("GET", f"{API}/projects/{{project}}/endpoints/{{name}}/v2/{{path:path}}"): VIEWER,
    ("POST", f"{API}/projects/{{project}}/endpoints/{{name}}/v2/{{path:path}}"): VIEWER,
    ("POST", f"{API}/projects/{{project}}/endpoints/{{name}}/v1/{{path:path}}"): VIEWER,
    # notebooks (_routes_notebooks.py): viewers list and show them; editors start, stop
    # and open them (the proxy runs code as the notebook); owners delete them (and
    # their homes)
    ("GET", f"{API}/projects/{{project}}/notebooks"): VIEWER,
    ("POST", f"{API}/projects/{{project}}/notebooks"): EDITOR,
    ("GET", f"{API}/projects/{{project}}/notebooks/{{name}}"): VIEWER,
    ("POST", f"{API}/projects/{{project}}/notebooks/{{name}}/stop"): EDITOR,
    ("DELETE", f"{API}/projects/{{project}}/notebooks/{{name}}"): OWNER,
    **{(m, f"{API}/projects/{{project}}/notebooks/{{name}}/{{path:path}}"): EDITOR
       for m in ("GET", "POST", "PUT", "PATCH", "DELETE", "WS")},
}


@dataclass(frozen=True, kw_only=True)
class Principal:
    """The authenticated caller: a user, through one token."""

    user: str
    admin: bool
    token: str
    scope: str | None          # the one project the token is limited to, if any
    roles: dict[str, str]      # project -> role, from the store

    @property
    def acts_as_admin(self) -> bool:
        return self.admin and self.scope is None

    def role_in(self, project: str) -> str | None:
        if self.scope is not None and self.scope != project:
            return None
        if self.acts_as_admin:
            return OWNER
        return self.roles.get(project)


def no_project(project: str) -> NotFound:
    """The one answer for a project that does not exist or that the caller cannot see."""
    return NotFound(f"no project {project!r}",
                    hint="list the projects you can see with GET /api/v1/projects "
                         "(or ask an owner of the project to add you)")


def check(rule: str, who: Principal, project: str | None) -> None:
    """Raise unless ``who`` may call a route with ``rule`` (on ``project``)."""
    if rule in (PUBLIC, USER):
        return
    if rule == ADMIN:
        if not who.acts_as_admin:
            raise PermissionDenied("this needs a server administrator",
                                   hint="ask an administrator, or use an unscoped admin token")
        return
    assert project is not None, rule
    role = who.role_in(project)
    if role is None:
        raise no_project(project)
    if ROLES.index(role) < ROLES.index(rule):
        raise PermissionDenied(f"{who.user} is {role} in project {project!r}; this needs "
                               f"{rule}", hint=f"ask an owner of {project!r} for the {rule} "
                                               "role")
