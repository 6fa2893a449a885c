"""The isolation matrix: every route of the API x every kind of caller, against the answer
the route table says it must get. A route without an entry in the table fails here."""

from __future__ import annotations

import re
import time
import uuid

import httpx
import pytest

from conftest import Server
from insitu.server._access import ACCESS, ADMIN, EDITOR, OWNER, PUBLIC, USER, VIEWER
from insitu.server._app import routers
from insitu.store import ROLES, RunRecord, open_store

CALLERS = ["none", "malformed", "expired", "revoked", "viewer", "editor", "owner",
           "other_owner", "owner_scoped_elsewhere", "admin_scoped_elsewhere", "admin"]


def _routes() -> list[tuple[str, str]]:
    out = []
    for r in [route for router in routers() for route in router.routes]:
        for m in sorted((getattr(r, "methods", None) or {"WS"}) - {"HEAD"}):
            out.append((m, r.path))  # type: ignore[attr-defined]
    return sorted(out)


# The rules as this test expects them, written out apart from the server's table: a change
# to either (a new route, a weaker rule) fails here until both agree.
EXPECTED = {
    ("GET", "/api/v1/health"): PUBLIC,
    ("GET", "/api/v1/whoami"): USER,
    ("GET", "/api/v1/auth/login"): PUBLIC,
    ("GET", "/api/v1/auth/callback"): PUBLIC,
    ("POST", "/api/v1/auth/logout"): USER,
    ("POST", "/api/v1/auth/session"): USER,
    ("GET", "/api/v1/projects"): USER,
    ("POST", "/api/v1/projects"): ADMIN,
    ("GET", "/api/v1/projects/{project}"): VIEWER,
    ("DELETE", "/api/v1/projects/{project}"): OWNER,
    ("GET", "/api/v1/projects/{project}/members"): VIEWER,
    ("PUT", "/api/v1/projects/{project}/members/{user}"): OWNER,
    ("DELETE", "/api/v1/projects/{project}/members/{user}"): OWNER,
    ("GET", "/api/v1/projects/{project}/runs"): VIEWER,
    ("GET", "/api/v1/projects/{project}/runs/{run_id}"): VIEWER,
    ("POST", "/api/v1/projects/{project}/runs/{run_id}/cancel"): EDITOR,
    ("GET", "/api/v1/projects/{project}/audit"): OWNER,
    ("GET", "/api/v1/projects/{project}/quota"): VIEWER,
    ("PUT", "/api/v1/projects/{project}/quota"): OWNER,
    ("DELETE", "/api/v1/projects/{project}/quota"): OWNER,
    ("GET", "/api/v1/users"): ADMIN,
    ("POST", "/api/v1/users"): ADMIN,
    ("GET", "/api/v1/tokens"): USER,
    ("POST", "/api/v1/tokens"): USER,
    ("DELETE", "/api/v1/tokens/{token_id}"): USER,
    ("GET", "/api/v1/audit"): ADMIN,
    ("GET", "/metrics"): ADMIN,
    ("GET", "/api/v1/projects/{project}/schedules"): VIEWER,
    ("POST", "/api/v1/projects/{project}/schedules"): EDITOR,
    ("GET", "/api/v1/projects/{project}/schedules/{name}"): VIEWER,
    ("POST", "/api/v1/projects/{project}/schedules/{name}/pause"): EDITOR,
    ("POST", "/api/v1/projects/{project}/schedules/{name}/resume"): EDITOR,
    ("DELETE", "/api/v1/projects/{project}/schedules/{name}"): EDITOR,
    ("POST", "/api/v1/projects/{project}/schedules/{name}/backfill"): EDITOR,
    ("GET", "/api/v1/projects/{project}/runs/{run_id}/steps"): VIEWER,
    ("GET", "/api/v1/projects/{project}/runs/{run_id}/graph"): VIEWER,
    ("GET", "/api/v1/projects/{project}/runs/{run_id}/data"): VIEWER,
    ("GET", "/api/v1/projects/{project}/runs/{run_id}/attempts"): VIEWER,
    ("GET", "/api/v1/projects/{project}/runs/{run_id}/steps/{task_id}/attempts"): VIEWER,
    ("GET", "/api/v1/projects/{project}/runs/{run_id}/logs"): VIEWER,
    ("GET", "/api/v1/projects/{project}/runs/{run_id}/logs/stream"): VIEWER,
    ("GET", "/api/v1/projects/{project}/runs/{run_id}/explain"): VIEWER,
    ("GET", "/api/v1/projects/{project}/runs/{run_id}/why"): VIEWER,
    ("GET", "/api/v1/projects/{project}/runs/{run_id}/metrics"): VIEWER,
    ("GET", "/api/v1/projects/{project}/runs/{run_id}/artifacts"): VIEWER,
    ("GET", "/api/v1/projects/{project}/runs/{run_id}/artifacts/{digest}"): VIEWER,
    ("GET", "/api/v1/projects/{project}/runs/{run_id}/artifacts/{digest}/preview"): VIEWER,
    ("GET", "/api/v1/projects/{project}/runs/{run_id}/studies/{step}"): VIEWER,
    ("GET", "/api/v1/projects/{project}/models"): VIEWER,
    ("GET", "/api/v1/projects/{project}/models/{name}"): VIEWER,
    ("GET", "/api/v1/projects/{project}/models/{name}/versions/{version}"): VIEWER,
    ("POST", "/api/v1/projects/{project}/models/{name}/versions"): EDITOR,
    ("PUT", "/api/v1/projects/{project}/models/{name}/aliases/{alias}"): EDITOR,
    ("DELETE", "/api/v1/projects/{project}/models/{name}/aliases/{alias}"): EDITOR,
    ("DELETE", "/api/v1/projects/{project}/models/{name}/versions/{version}"): OWNER,
    ("GET", "/api/v1/projects/{project}/datasets"): VIEWER,
    ("GET", "/api/v1/projects/{project}/datasets/{name}"): VIEWER,
    ("GET", "/api/v1/projects/{project}/studies"): VIEWER,
    ("GET", "/api/v1/cluster"): USER,
    ("PUT", "/api/v1/projects/{project}/packages/{digest}"): EDITOR,
    ("GET", "/api/v1/projects/{project}/packages/{digest}"): VIEWER,
    ("POST", "/api/v1/projects/{project}/runs"): EDITOR,
    ("POST", "/api/v1/projects/{project}/runs/{run_id}/resume"): EDITOR,
    ("POST", "/api/v1/projects/{project}/runs/{run_id}/rerun"): EDITOR,
    ("DELETE", "/api/v1/projects/{project}/runs/{run_id}"): OWNER,
    ("GET", "/api/v1/projects/{project}/endpoints"): VIEWER,
    ("POST", "/api/v1/projects/{project}/endpoints"): EDITOR,
    ("GET", "/api/v1/projects/{project}/endpoints/{name}"): VIEWER,
    ("PATCH", "/api/v1/projects/{project}/endpoints/{name}"): EDITOR,
    ("DELETE", "/api/v1/projects/{project}/endpoints/{name}"): EDITOR,
    ("GET", "/api/v1/projects/{project}/endpoints/{name}/logs"): VIEWER,
    ("PUT", "/api/v1/projects/{project}/endpoints/{name}/traffic"): EDITOR,
    ("POST", "/api/v1/projects/{project}/endpoints/{name}/promote"): EDITOR,
    ("POST", "/api/v1/projects/{project}/endpoints/{name}/rollback"): EDITOR,
    # calling the model: a viewer's token (posting a request changes nothing)
    ("GET", "/api/v1/projects/{project}/endpoints/{name}/v2/{path:path}"): VIEWER,
    ("POST", "/api/v1/projects/{project}/endpoints/{name}/v2/{path:path}"): VIEWER,
    ("POST", "/api/v1/projects/{project}/endpoints/{name}/v1/{path:path}"): VIEWER,
    ("GET", "/api/v1/projects/{project}/notebooks"): VIEWER,
    ("POST", "/api/v1/projects/{project}/notebooks"): EDITOR,
    ("GET", "/api/v1/projects/{project}/notebooks/{name}"): VIEWER,
    ("POST", "/api/v1/projects/{project}/notebooks/{name}/stop"): EDITOR,
    ("DELETE", "/api/v1/projects/{project}/notebooks/{name}"): OWNER,
    ("GET", "/api/v1/projects/{project}/notebooks/{name}/{path:path}"): EDITOR,
    ("POST", "/api/v1/projects/{project}/notebooks/{name}/{path:path}"): EDITOR,
    ("PUT", "/api/v1/projects/{project}/notebooks/{name}/{path:path}"): EDITOR,
    ("PATCH", "/api/v1/projects/{project}/notebooks/{name}/{path:path}"): EDITOR,
    ("DELETE", "/api/v1/projects/{project}/notebooks/{name}/{path:path}"): EDITOR,
    # the kernels' WebSockets (tests/server/test_notebooks.py checks who may open them)
    ("WS", "/api/v1/projects/{project}/notebooks/{name}/{path:path}"): EDITOR,
}


def test_every_route_has_the_expected_access_rule() -> None:
    routes = _routes()
    assert routes, "no routes found"
    assert [r for r in routes if r not in ACCESS] == []
    assert [r for r in ACCESS if r not in routes] == []  # no stale rule either
    assert ACCESS == EXPECTED
    # whatever is under a project needs a role in it; changes need more than a viewer
    for (method, path), rule in ACCESS.items():
        if "{project}" in path:
            assert rule in ROLES, (method, path)
            if method != "GET" and not re.search(r"/v[12]/\{path:path\}$", path):
                assert rule != VIEWER, (method, path)
        if method != "GET":
            assert rule != PUBLIC, (method, path)


def _world(s: Server) -> dict[str, str]:
    """Projects alpha and beta, a user per role in alpha, an owner of beta, and a token for
    each kind of caller."""
    a = s.admin
    for name in ("view", "edit", "ownr", "other", "multi"):
        assert a.post("/api/v1/users", json={"name": name}).status_code == 201
    assert a.post("/api/v1/projects", json={"name": "alpha", "owner": "ownr"}).status_code == 201
    assert a.post("/api/v1/projects", json={"name": "beta", "owner": "other"}).status_code == 201
    for user, role in (("view", "viewer"), ("edit", "editor"), ("multi", "owner")):
        r = a.put(f"/api/v1/projects/alpha/members/{user}", json={"role": role})
        assert r.status_code == 200, r.text

    def token(user: str, **kw: object) -> str:
        r = a.post("/api/v1/tokens", json={"name": f"{user} token", "user": user, **kw})
        assert r.status_code == 201, r.text
        return str(r.json()["token"])

    r = a.put("/api/v1/projects/beta/members/multi", json={"role": "owner"})
    assert r.status_code == 200, r.text
    tokens = {"owner_scoped_elsewhere": token("multi", project="beta"),
              "admin_scoped_elsewhere": token("admin", project="beta"),
              "viewer": token("view"), "editor": token("edit"), "owner": token("ownr"),
              "other_owner": token("other"), "admin": s.admin_token,
              "malformed": "isk_nothex_abc", "expired": token("ownr", expires_in_days=1e-5)}
    revoked = a.post("/api/v1/tokens", json={"name": "r", "user": "ownr"}).json()
    assert a.delete(f"/api/v1/tokens/{revoked['id']}").status_code == 204
    tokens["revoked"] = revoked["token"]
    deadline = time.monotonic() + 120  # 0.86 s of validity: wait until it has run out
    while s.client(tokens["expired"]).get("/api/v1/whoami").status_code != 401:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    store = open_store(s.db_url)
    store.put(RunRecord(id="run0alpha001", pipeline="p", state="succeeded",
                        spec={"name": "p", "steps": []}, params={}, created_at=time.time(),
                        project="alpha"))
    store.close()
    return tokens


def _expected(rule: str, caller: str) -> str:
    if rule == PUBLIC:
        return "allowed"
    if caller in ("none", "malformed", "expired", "revoked"):
        return "401"
    if rule == USER:
        return "allowed"
    if rule == ADMIN:  # a token scoped to a project never acts as an administrator
        return "allowed" if caller == "admin" else "403"
    role = {"viewer": VIEWER, "editor": EDITOR, "owner": OWNER, "admin": OWNER}.get(caller)
    if role is None:
        return "hidden"  # not a member: the same 404 as a project that does not exist
    return "allowed" if ROLES.index(role) >= ROLES.index(rule) else "403"


def _call(c: httpx.Client, method: str, path: str) -> httpx.Response:
    url = (path.replace("{project}", "alpha").replace("{user}", "ghost")
           .replace("{token_id}", "000000000000").replace("{run_id}", "run0alpha001")
           .replace("{task_id}", "nope").replace("{digest}", "0" * 64)
           .replace("{name}", "nope").replace("{version}", "1").replace("{step}", "nope")
           .replace("{alias}", "nope").replace("{path:path}", "api/status"))
    body = {
        ("POST", "/api/v1/projects"): {"name": f"p-{uuid.uuid4().hex[:8]}"},
        ("POST", "/api/v1/users"): {"name": f"u-{uuid.uuid4().hex[:8]}"},
        ("POST", "/api/v1/tokens"): {"name": "matrix"},
    }.get((method, path))
    if method == "PUT":
        body = {"role": "viewer"}
    return c.request(method, url, json=body)


def test_isolation_matrix(server: Server) -> None:
    tokens = _world(server)
    hidden = server.admin.get("/api/v1/projects/zzz-none").json()
    results: list[tuple[str, str, str, str, int]] = []
    http = [(m, p) for m, p in _routes() if m != "WS"]
    for method, path in http:
        rule = ACCESS[(method, path)]
        for caller in CALLERS:
            c = server.client(tokens.get(caller))
            r = _call(c, method, path)
            want = _expected(rule, caller)
            body = r.json() if "json" in r.headers.get("content-type", "") else {}
            if want == "401":
                ok = r.status_code == 401 and body["status"] == 401
            elif want == "403":
                ok = r.status_code == 403 and body["status"] == 403
            elif want == "hidden":  # indistinguishable from a project that does not exist
                ok = (r.status_code == 404 and body["type"] == hidden["type"]
                      and body["detail"] == hidden["detail"].replace("zzz-none", "alpha")
                      and body["hint"] == hidden["hint"])
            else:
                ok = r.status_code not in (401, 403) and r.status_code < 500 and not (
                    r.status_code == 404 and re.match(r"no project ", body.get("detail", "")))
            results.append((method, path, caller, want, r.status_code if not ok else 0))
    leaks = [x for x in results if x[4]]
    assert len(results) == len(http) * len(CALLERS)
    assert leaks == []


@pytest.mark.parametrize("header", ["Bearer", "Basic abc", "Bearer isk_", "Token x",
                                    "Bearer " + "a" * 5000])
def test_bad_authorization_headers_get_401_problems(server: Server, header: str) -> None:
    r = httpx.get(f"{server.url}/api/v1/whoami", headers={"Authorization": header})
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json()["hint"]


def test_no_client_header_is_trusted_as_identity(server: Server) -> None:
    for h in ({"X-Forwarded-User": "admin"}, {"X-Remote-User": "admin"},
              {"kubeflow-userid": "admin"}, {"X-User": "admin"}):
        assert httpx.get(f"{server.url}/api/v1/whoami", headers=h).status_code == 401
