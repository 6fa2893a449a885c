"""Submitting runs to a real server: code packages, the run executing in an engine process
the server's supervisor starts, resume and delete; and every bad package refused with a
problem document."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from remote import build_package, compile_spec, launch, stop, wait_for, write_pipeline, zip_of

from conftest import cli
from pg_fixture import databases


class Srv:
    def __init__(self, url: str, token: str, home: Path, db_url: str) -> None:
        self.url, self.token, self.home, self.db_url = url, token, home, db_url
        self.http = httpx.Client(base_url=url, timeout=60,
                                 headers={"Authorization": f"Bearer {token}"})


@pytest.fixture(scope="module", params=databases("postgresql"))
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Srv]:
    home = tmp_path_factory.mktemp("remote-home")
    if request.param == "sqlite":
        db_url = f"sqlite:///{home / 'server.db'}"
    else:
        db_url = request.getfixturevalue("postgres").create_database(
            "r_" + secrets.token_hex(6))
    init = cli(home, "server", "init", "--db", db_url)
    assert init.returncode == 0, init.stderr
    proc, url = launch(db_url, home, "--max-package", "64KiB", "--poll", "0.2",
                       "--lease", "6")
    s = Srv(url, init.stdout.strip().splitlines()[-1], home, db_url)
    try:
        yield s
    finally:
        s.http.close()
        stop(proc)


def _problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["detail"] and body.get("hint"), body
    return body


def _ended(s: Srv, rid: str, timeout: float = 120) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        v: dict[str, Any] = s.http.get(f"/api/v1/projects/default/runs/{rid}").json()
        return v if v["state"] in ("succeeded", "failed", "cancelled") else None
    got: dict[str, Any] = wait_for(done, timeout, f"run {rid} to end", every=0.3)
    return got


def test_a_packaged_pipeline_submitted_from_another_folder_runs_on_the_server(
        srv: Srv, tmp_path: Path) -> None:
    root, marks = tmp_path / "proj", tmp_path / "marks"
    marks.mkdir()
    pipeline = write_pipeline(root, marks)
    spec = compile_spec(tmp_path / "client-home", pipeline)
    data, digest = build_package(root)
    url = f"/api/v1/projects/default/packages/{digest}"
    headers = {"Content-Type": "application/zip"}
    first = srv.http.put(url, content=data, headers=headers)
    assert first.status_code == 201, first.text
    assert srv.http.put(url, content=data, headers=headers).status_code == 200
    got = srv.http.get(url).json()
    assert got == {"digest": f"sha256:{digest}", "size": len(data),
                   "files": ["lib/__init__.py", "lib/helper.py", "pipeline.py"]}
    shutil.rmtree(root)  # the server runs what was packaged, not the client's folder
    r = srv.http.post("/api/v1/projects/default/runs",
                      json={"spec": spec, "params": {"n": 1}, "package": digest,
                            "labels": {"team": "x"}})
    assert r.status_code == 201, r.text
    view = r.json()
    assert view["state"] == "pending"
    assert view["labels"] == {"team": "x", "package": f"sha256:{digest}"}
    assert [t["step"] for t in view["tasks"]] == ["first", "second", "third"]
    final = _ended(srv, view["id"])
    assert final["state"] == "succeeded", final
    assert [(t["step"], t["state"], t["attempts"]) for t in final["tasks"]] == [
        ("first", "succeeded", 1), ("second", "succeeded", 1), ("third", "succeeded", 1)]
    assert (marks / f"{view['id']}.marks").read_text().split() == ["first", "second", "third"]
    # it ran in an engine process, not in the API process
    from insitu.store import open_store

    store = open_store(srv.db_url)
    try:
        run = store.get_run(view["id"])
        assert run.engine_pid is not None
        assert run.supervised and run.pipeline == "three"
        from insitu.artifacts import ArtifactStore  # noqa: F401 - output exists
        third = [t for t in store.list_tasks(run.id) if t.id == "third"][0]
        assert third.output is not None
    finally:
        store.close()
    # finished: it can be deleted (owner), and is gone
    assert srv.http.delete(f"/api/v1/projects/default/runs/{view['id']}").status_code == 204
    _problem(srv.http.get(f"/api/v1/projects/default/runs/{view['id']}"), 404)


def test_bad_packages_are_refused_with_problem_documents(srv: Srv, tmp_path: Path) -> None:
    base = "/api/v1/projects/default/packages"
    h = {"Content-Type": "application/zip"}
    data, digest = zip_of({"pipeline.py": b"x = 1\n"})
    wrong = "0" * 64
    body = _problem(srv.http.put(f"{base}/{wrong}", content=data, headers=h), 400)
    assert digest in body["detail"] and wrong in body["detail"]
    _problem(srv.http.put(f"{base}/not-a-digest", content=data, headers=h), 400)
    big, big_digest = zip_of({"weights.bin": secrets.token_bytes(70 * 1024)})
    body = _problem(srv.http.put(f"{base}/{big_digest}", content=big, headers=h), 413)
    assert body["size"] == len(big) and body["limit"] == 64 * 1024
    assert "--max-package" in body["hint"]
    for members, link, says in (({"../evil.py": b""}, None, "'..'"),
                                ({"a/../../evil.py": b""}, None, "'..'"),
                                ({"/etc/evil.py": b""}, None, "absolute"),
                                ({"ok.py": b""}, "lnk.py", "symbolic link")):
        bad, bad_digest = zip_of(members, link=link)
        body = _problem(srv.http.put(f"{base}/{bad_digest}", content=bad, headers=h), 400)
        assert says in body["detail"], body
        _problem(srv.http.get(f"{base}/{bad_digest}"), 404)  # nothing was kept
    notzip = b"plain text, not a zip"
    import hashlib

    nz = hashlib.sha256(notzip).hexdigest()
    assert "not a zip" in _problem(srv.http.put(f"{base}/{nz}", content=notzip,
                                                headers=h), 400)["detail"]


def test_a_submission_naming_files_the_package_lacks_is_refused(srv: Srv,
                                                               tmp_path: Path) -> None:
    root = tmp_path / "proj"
    spec = compile_spec(tmp_path / "client-home", write_pipeline(root, tmp_path))
    runs = "/api/v1/projects/default/runs"
    before = len(srv.http.get(runs).json()["items"])
    data, digest = build_package(root, ["lib/helper.py", "lib/__init__.py"])
    assert srv.http.put(f"/api/v1/projects/default/packages/{digest}", content=data
                        ).status_code == 201
    body = _problem(srv.http.post(runs, json={"spec": spec, "package": digest}), 400)
    assert "'pipeline.py'" in body["detail"] and "step 'first'" in body["detail"]
    body = _problem(srv.http.post(runs, json={"spec": spec}), 400)  # no package at all
    assert "no package" in body["detail"]
    body = _problem(srv.http.post(runs, json={"spec": spec, "package": "ab" * 32}), 404)
    assert "no code package" in body["detail"]
    assert len(srv.http.get(runs).json()["items"]) == before  # nothing was written


FLAKY = '''\
import os

import insitu

HERE = {here!r}


@insitu.step
def prepare() -> int:
    with open(os.path.join(HERE, "prepare.count"), "a") as f:
        f.write("x")
    return 1


@insitu.step(retries=0)
def train(x: int) -> int:
    if os.path.exists(os.path.join(HERE, "fail")):
        raise RuntimeError("told to fail")
    return x + 1


@insitu.pipeline
def flaky():
    train(prepare())
'''


def test_resume_continues_a_failed_run_without_rerunning_finished_steps(
        srv: Srv, tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "flaky.py").write_text(FLAKY.format(here=str(tmp_path)))
    (tmp_path / "fail").write_text("")
    spec = compile_spec(tmp_path / "client-home", root / "flaky.py")
    data, digest = build_package(root)
    srv.http.put(f"/api/v1/projects/default/packages/{digest}", content=data)
    rid = srv.http.post("/api/v1/projects/default/runs",
                        json={"spec": spec, "package": digest}).json()["id"]
    assert _ended(srv, rid)["state"] == "failed"
    run_url = f"/api/v1/projects/default/runs/{rid}"
    _problem(srv.http.delete(run_url.replace(rid, "nosuchrun")), 404)
    (tmp_path / "fail").unlink()
    r = srv.http.post(f"{run_url}/resume")
    assert r.status_code == 200, r.text
    assert _ended(srv, rid)["state"] == "succeeded"
    assert (tmp_path / "prepare.count").read_text() == "x"  # not run again
    _problem(srv.http.post(f"{run_url}/resume"), 409)       # succeeded: nothing to resume


def test_a_run_still_going_cannot_be_deleted(srv: Srv, tmp_path: Path) -> None:
    root, marks = tmp_path / "proj", tmp_path / "marks"
    marks.mkdir()
    spec = compile_spec(tmp_path / "client-home", write_pipeline(root, marks, sleep=3))
    data, digest = build_package(root)
    srv.http.put(f"/api/v1/projects/default/packages/{digest}", content=data)
    rid = srv.http.post("/api/v1/projects/default/runs",
                        json={"spec": spec, "package": digest}).json()["id"]
    run_url = f"/api/v1/projects/default/runs/{rid}"
    body = _problem(srv.http.delete(run_url), 409)
    assert "cancel it first" in body["hint"]
    assert srv.http.post(f"{run_url}/cancel").status_code == 200
    assert _ended(srv, rid)["state"] == "cancelled"
    assert srv.http.delete(run_url).status_code == 204
