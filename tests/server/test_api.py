"""The API's behaviour over real HTTP: pages, tokens, the audit log, problem documents."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import sqlalchemy as sa

from conftest import Server, cli
from insitu.store import RunRecord, open_store


def _project(s: Server) -> str:
    name = f"p-{uuid.uuid4().hex[:8]}"
    assert s.admin.post("/api/v1/projects", json={"name": name}).status_code == 201
    return name


def test_runs_page_through_every_run_once_newest_first(server: Server) -> None:
    project = _project(server)
    store = open_store(server.db_url)
    t0 = time.time()
    runs = [RunRecord(id=f"r{project[-8:]}{i:04d}", pipeline="p" if i % 3 else "q",
                      state="succeeded" if i % 2 else "failed", spec={"name": "p", "steps": []},
                      params={}, created_at=t0 + i // 4, project=project)  # ties on time
            for i in range(123)]
    store.put(*runs)
    store.close()
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 50, **({"cursor": cursor} if cursor else {})}
        r = server.admin.get(f"/api/v1/projects/{project}/runs", params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        seen += [x["id"] for x in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    want = [x.id for x in sorted(runs, key=lambda x: (x.created_at, x.id), reverse=True)]
    assert seen == want
    assert pages == 3
    r = server.admin.get(f"/api/v1/projects/{project}/runs",
                         params={"pipeline": "q", "state": "failed", "limit": 500})
    assert {x["id"] for x in r.json()["items"]} == {
        x.id for x in runs if x.pipeline == "q" and x.state == "failed"}
    bad = server.admin.get(f"/api/v1/projects/{project}/runs", params={"cursor": "@@@"})
    assert bad.status_code == 400 and "cursor" in bad.json()["detail"]
    assert server.admin.get(f"/api/v1/projects/{project}/runs",
                            params={"limit": 0}).status_code == 422


def test_tokens_are_stored_only_as_hashes_and_shown_once(server: Server) -> None:
    r = server.admin.post("/api/v1/tokens", json={"name": "ci"})
    assert r.status_code == 201
    tok = r.json()
    secret = tok["token"].rsplit("_", 1)[1]
    listed = server.admin.get("/api/v1/tokens").json()
    assert tok["id"] in {t["id"] for t in listed}
    assert all("token" not in t and "digest" not in t for t in listed)
    engine = sa.create_engine(server.db_url)
    with engine.connect() as conn:
        rows = [tuple(map(str, row)) for row in conn.execute(sa.text("SELECT * FROM tokens"))]
    engine.dispose()
    assert rows and not any(secret in cell or tok["token"] in cell for row in rows
                            for cell in row)
    assert server.client(tok["token"]).get("/api/v1/whoami").json()["user"] == "admin"
    assert server.admin.delete(f"/api/v1/tokens/{tok['id']}").status_code == 204
    assert server.client(tok["token"]).get("/api/v1/whoami").status_code == 401


def test_every_change_and_refusal_is_in_the_audit_log(server: Server) -> None:
    project = _project(server)
    user = f"u-{uuid.uuid4().hex[:8]}"
    assert server.admin.post("/api/v1/users", json={"name": user}).status_code == 201
    r = server.admin.put(f"/api/v1/projects/{project}/members/{user}", json={"role": "viewer"})
    assert r.status_code == 200
    viewer = server.admin.post("/api/v1/tokens", json={"user": user}).json()["token"]
    refused = server.client(viewer).delete(f"/api/v1/projects/{project}/members/{user}")
    assert refused.status_code == 403
    log = server.admin.get("/api/v1/audit", params={"project": project}).json()["items"]
    actions = [(x["action"], x["outcome"], x["user"]) for x in log]
    assert ("project.create", "ok", "admin") in actions
    assert ("member.set", "ok", "admin") in actions
    assert ("DELETE /api/v1/projects/{project}/members/{user}", "denied", user) in actions
    assert all(x["client"] == "127.0.0.1" and x["token"] for x in log)
    own = server.admin.get(f"/api/v1/projects/{project}/audit").json()["items"]
    assert [x["id"] for x in own] == [x["id"] for x in log]
    # append-only: the API has no way to change or remove an audit record
    spec = server.admin.get("/api/v1/openapi.json").json()
    for path, ops in spec["paths"].items():
        if "audit" in path:
            assert set(ops) == {"get"}, path


def test_errors_are_problem_documents_with_a_fix(server: Server) -> None:
    a = server.admin
    cases = [
        a.post("/api/v1/projects", json={"name": "Bad Name!"}),
        a.post("/api/v1/projects", json={"name": "ok-name", "extra": 1}),
        a.post("/api/v1/projects", content=b"{not json", headers={"content-type":
                                                                  "application/json"}),
        a.put("/api/v1/projects/default/members/admin", json={"role": "boss"}),
        a.post("/api/v1/tokens", json={"expires_in_days": -1}),
        a.get("/api/v1/projects/default/runs/nosuchrun"),
        a.get("/api/v1/no/such/route"),
        a.delete("/api/v1/projects/default"),
        a.post("/api/v1/users", json={"name": "nul", "email": "a\u0000b"}),
        a.get("/api/v1/projects/default/runs", params={"pipeline": "a\x00b"}),
        a.get("/api/v1/projects/de%00fault"),
    ]
    assert [c.status_code for c in cases] == [400, 422, 422, 400, 400, 404, 404, 409, 422,
                                              400, 400]
    for c in cases:
        assert c.headers["content-type"] == "application/problem+json"
        body = c.json()
        assert body["status"] == c.status_code and body["detail"] and body["type"]
    assert "lowercase" in cases[0].json()["hint"]


def test_cancel_asks_a_live_engine_and_marks_a_run_whose_engine_is_gone(server: Server
                                                                        ) -> None:
    import os
    import socket

    project = _project(server)
    store = open_store(server.db_url)
    now = time.time()
    live, gone = f"l{uuid.uuid4().hex[:11]}", f"g{uuid.uuid4().hex[:11]}"
    store.put(RunRecord(id=live, pipeline="p", state="running", spec={"name": "p", "steps": []},
                        params={}, created_at=now, project=project, engine_pid=os.getpid(),
                        engine_host=socket.gethostname(), heartbeat_at=now + 3600),
              RunRecord(id=gone, pipeline="p", state="running", spec={"name": "p", "steps": []},
                        params={}, created_at=now, project=project, engine_pid=2**22 + 7,
                        engine_host=socket.gethostname(), heartbeat_at=now - 3600))
    listed = {x["id"]: x["state"] for x in
              server.admin.get(f"/api/v1/projects/{project}/runs").json()["items"]}
    assert listed == {live: "running", gone: "interrupted"}
    r = server.admin.post(f"/api/v1/projects/{project}/runs/{live}/cancel")
    assert r.status_code == 200 and r.json()["cancel_requested"] is True, r.text
    assert store.get_run(live).cancel_requested is True  # its engine stops it
    r = server.admin.post(f"/api/v1/projects/{project}/runs/{gone}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled", r.text
    assert store.get_run(gone).state == "cancelled"  # nothing drives it: marked here
    store.close()
    log = server.admin.get("/api/v1/audit", params={"action": "run.cancel"}).json()["items"]
    assert {x["object"] for x in log} >= {f"run/{live}", f"run/{gone}"}
    got = server.admin.get(f"/api/v1/projects/{project}/runs/{gone}").json()
    assert got["id"] == gone and got["tasks"] == [] and "spec" not in got


def test_openapi_document_is_served(server: Server) -> None:
    spec = httpx.get(f"{server.url}/api/v1/openapi.json").json()
    assert spec["info"]["title"] == "insitu"
    assert "/api/v1/projects/{project}/runs" in spec["paths"]


def test_init_twice_and_an_unreachable_database_are_clear_errors(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'x.db'}"
    assert cli(tmp_path, "server", "init", "--db", db).returncode == 0
    again = cli(tmp_path, "server", "init", "--db", db)
    assert again.returncode == 2 and "already has an administrator" in again.stderr
    assert "Traceback" not in again.stderr
    down = cli(tmp_path, "server", "--db", "postgresql+psycopg://me:pw-secret@127.0.0.1:1/db")
    assert down.returncode == 2 and "Traceback" not in down.stderr
    assert "pw-secret" not in down.stderr and "127.0.0.1" in down.stderr


def test_prometheus_metrics_count_runs_and_requests(server: Server) -> None:
    project = _project(server)
    store = open_store(server.db_url)
    store.put(*[RunRecord(id=f"m{project[-8:]}{i:03d}", pipeline="p",
                          state="failed" if i < 3 else "succeeded",
                          spec={"name": "p", "steps": []}, params={}, created_at=time.time(),
                          project=project) for i in range(7)])
    store.close()
    assert server.admin.get(f"/api/v1/projects/{project}/runs").status_code == 200
    r = server.admin.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert f'insitu_runs{{project="{project}",state="failed"}} 3.0' in text
    assert f'insitu_runs{{project="{project}",state="succeeded"}} 4.0' in text
    assert ('insitu_api_requests_total{method="GET",route="/api/v1/projects/{project}/runs",'
            'status="200"}') in text
    assert 'insitu_api_request_seconds_bucket{le="0.001",method="GET"' in text
    assert httpx.get(f"{server.url}/metrics").status_code == 401
