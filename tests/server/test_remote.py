"""Remote use with unchanged commands: ``insitu login`` against a real server process, then
``insitu run`` / ``runs`` / ``show`` / ``logs`` / ``cancel`` / ``resume`` from a pipeline in
another directory, and ``insitu.run`` / ``insitu.get_run`` from Python, all over real HTTP.

The user's side runs in subprocesses with its own HOME and INSITU_HOME (never the server's)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from conftest import Server, _free_port, stop_server
from conftest import cli as run_cli
from pg_fixture import databases

SERVER_DBS = databases("sqlite")  # INSITU_TEST_ALL_DBS=1: both

CLI = Callable[..., subprocess.CompletedProcess[str]]

PIPELINE = '''
import sys
import time
from pathlib import Path

import insitu
from helpers import double, shout
from lib.feats import label


@insitu.step
def make(n: int) -> list[int]:
    print(f"making {n} numbers")
    return list(range(n))


@insitu.step
def total(xs: list[int]) -> int:
    s = sum(double(x) for x in xs)
    for i, loss in enumerate((0.9, 0.4, 0.25)):
        insitu.log_metric("loss", loss, step=i)
    insitu.log_params({"optimizer": "sgd"})
    print(label(s))
    print("a line on stderr", file=sys.stderr)
    return s


@insitu.pipeline
def numbers(n: int = 3):
    shout(total(make(n)))


@insitu.step
def wait_for(marker: str) -> str:
    print("waiting for", marker, flush=True)
    while not Path(marker).exists():
        time.sleep(0.1)
    from lazy_mod import finish  # imported only here: the package must still hold it
    return finish()


@insitu.pipeline
def waits(marker: str):
    wait_for(marker)


@insitu.step
def boom(x: int) -> int:
    raise ValueError(f"x must be positive, got {x}")


@insitu.pipeline
def fails(x: int = -1):
    boom(x)
'''

HELPERS = '''
import insitu


def double(x: int) -> int:
    return 2 * x


@insitu.step
def shout(total: int) -> str:
    print(f"TOTAL IS {total}")
    return f"TOTAL IS {total}"
'''


def _user_files(root: Path) -> Path:
    """The user's pipeline folder (not the server's, not the current directory)."""
    pipe = root / "proj"
    (pipe / "lib").mkdir(parents=True)
    (pipe / "pipeline.py").write_text(PIPELINE)
    (pipe / "helpers.py").write_text(HELPERS)
    (pipe / "lib" / "__init__.py").write_text("")
    (pipe / "lib" / "feats.py").write_text("def label(s):\n    return f'sum is {s}'\n")
    (pipe / "lazy_mod.py").write_text("def finish():\n    return 'finished'\n")
    (pipe / "unrelated.py").write_text("raise SystemExit('never imported')\n")
    return pipe


@pytest.fixture
def user(tmp_path: Path) -> Iterator[tuple[CLI, Path, dict[str, str]]]:
    """A user's machine: HOME and INSITU_HOME of its own, the pipeline folder, and a runner
    of the real ``insitu`` command from a third folder."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("INSITU_") and k != "XDG_CONFIG_HOME"}
    env.update(HOME=str(home), INSITU_HOME=str(home / ".insitu"), COLUMNS="200")
    pipe = _user_files(tmp_path / "code")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def run(*args: str, extra: dict[str, str] | None = None, stdin: str | None = None,
            timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "insitu", *args], capture_output=True,
                              text=True, timeout=timeout, env={**env, **(extra or {})},
                              cwd=elsewhere, input=stdin)

    yield run, pipe, env


def _project(s: Server) -> str:
    name = f"r-{uuid.uuid4().hex[:8]}"
    r = s.admin.post("/api/v1/projects", json={"name": name})
    assert r.status_code == 201, r.text
    return name


def _login(s: Server, run: CLI, project: str) -> None:
    r = run("login", s.url, "--project", project, stdin=s.admin_token + "\n")
    assert r.returncode == 0, r.stderr
    assert s.admin_token not in r.stdout + r.stderr


def _one_error(r: subprocess.CompletedProcess[str]) -> str:
    """The stderr of a command that failed as a user error: code 2, no traceback."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    assert r.stderr.startswith("error: "), r.stderr
    return " ".join(r.stderr.split())  # as one line, however the terminal wrapped it


# -- login, tokens, errors ----------------------------------------------------------------------

def test_login_keeps_the_token_private_and_logout_forgets_it(
        server: Server, user: tuple[CLI, Path, dict[str, str]]) -> None:
    run, _, env = user
    project = _project(server)
    r = run("login", server.url + "/api/v1/", "--project", project,
            stdin=server.admin_token + "\n")
    assert r.returncode == 0, r.stderr
    assert f"logged in to {server.url} as admin" in r.stdout
    assert f"project {project} (role owner)" in r.stdout
    assert server.admin_token not in r.stdout + r.stderr
    creds = Path(env["INSITU_HOME"]) / "credentials.toml"
    assert str(creds) in r.stdout.replace("\n", "")
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    import tomllib

    assert tomllib.loads(creds.read_text()) == {"server": server.url,
                                                "token": server.admin_token,
                                                "project": project}
    listed = run("runs")
    assert listed.returncode == 0, listed.stderr
    assert f"no runs yet in project {project} on {server.url}" in listed.stdout
    assert json.loads(run("runs", "--json").stdout) == []
    out = run("logout")
    assert out.returncode == 0 and f"logged out of {server.url}" in out.stdout
    assert not creds.exists()
    local = run("runs")  # the local store again
    assert local.returncode == 0 and "no runs yet: try `insitu demo`" in local.stdout
    assert "not logged in" in run("logout").stdout


def test_login_with_token_option_and_env_overrides(
        server: Server, user: tuple[CLI, Path, dict[str, str]]) -> None:
    run, _, env = user
    project = _project(server)
    r = run("login", server.url, "--token", server.admin_token)
    assert r.returncode == 0, r.stderr
    assert "project default" in r.stdout  # the default project
    via_env = run("runs", extra={"INSITU_PROJECT": project})
    assert f"no runs yet in project {project}" in via_env.stdout, via_env.stderr
    via_opt = run("--project", project, "runs")
    assert f"no runs yet in project {project}" in via_opt.stdout, via_opt.stderr
    # INSITU_SERVER + INSITU_TOKEN work without any login
    run("logout")
    r = run("runs", extra={"INSITU_SERVER": server.url, "INSITU_TOKEN": server.admin_token,
                           "INSITU_PROJECT": project})
    assert f"no runs yet in project {project} on {server.url}" in r.stdout, r.stderr
    # INSITU_SERVER without a token for it
    err = _one_error(run("runs", extra={"INSITU_SERVER": server.url}))
    assert f"INSITU_SERVER is set ({server.url}) but there is no token" in err
    assert "INSITU_TOKEN" in err
    # INSITU_SERVER set and empty: local even when logged in
    run("login", server.url, "--token", server.admin_token)
    local = run("runs", extra={"INSITU_SERVER": ""})
    assert "no runs yet: try `insitu demo`" in local.stdout


def test_a_bad_or_revoked_token_is_one_clear_line(
        server: Server, user: tuple[CLI, Path, dict[str, str]]) -> None:
    run, _, env = user
    unknown = "isk_" + "0" * 12 + "_" + "a" * 43  # well formed, never issued
    err = _one_error(run("login", server.url, "--token", unknown))
    assert f"the server at {server.url} refused the token" in err
    assert "the API token is not known" in err
    assert f"insitu login {server.url}" in err
    assert not (Path(env["INSITU_HOME"]) / "credentials.toml").exists()
    err = _one_error(run("login", server.url, "--token", "garbage"))
    assert "the API token is malformed" in err
    err = _one_error(run("login", server.url, stdin=""))
    assert "no API token was given" in err
    # a token that worked at login and was revoked since
    tok = server.admin.post("/api/v1/tokens", json={"name": "laptop"}).json()
    assert run("login", server.url, "--token", tok["token"]).returncode == 0
    assert server.admin.delete(f"/api/v1/tokens/{tok['id']}").status_code == 204
    err = _one_error(run("runs"))
    assert f"the API token {tok['id']} was revoked" in err
    assert "(from insitu login, kept in " in err and "credentials.toml" in err
    assert tok["token"] not in err
    err = _one_error(run("runs", extra={"INSITU_TOKEN": unknown}))
    assert "(from INSITU_TOKEN)" in err


def test_an_unknown_project_is_the_servers_message(
        server: Server, user: tuple[CLI, Path, dict[str, str]]) -> None:
    run, _, _ = user
    err = _one_error(run("login", server.url, "--token", server.admin_token,
                         "--project", "nope"))
    assert "cannot use project 'nope'" in err and "no project 'nope'" in err
    assert "default" in err  # the projects it may choose
    assert run("login", server.url, "--token", server.admin_token).returncode == 0
    err = _one_error(run("--project", "nope", "runs"))
    assert "no project 'nope'" in err
    assert "GET /api/v1/projects" in err  # the API's own fix, as it gave it


def test_an_unreachable_server_is_named(user: tuple[CLI, Path, dict[str, str]]) -> None:
    run, pipe, _ = user
    url = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    for args in (("runs",), ("show", "r1"), ("logs", "r1"), ("cancel", "r1"),
                 ("run", str(pipe / "pipeline.py:numbers"))):
        err = _one_error(run(*args, extra={"INSITU_SERVER": url, "INSITU_TOKEN": "isk_a_b"}))
        assert f"cannot reach the insitu server at {url}" in err, args
        assert "INSITU_SERVER" in err and "insitu logout" in err
        assert err.count("error:") == 1 and err.count("fix:") == 1, err
    err = _one_error(run("login", url, "--token", "isk_a_b"))
    assert f"cannot reach the insitu server at {url}" in err


# -- running on the server ------------------------------------------------------------------------

def test_run_on_the_server_from_another_directory(
        server: Server, user: tuple[CLI, Path, dict[str, str]]) -> None:
    run, pipe, env = user
    project = _project(server)
    _login(server, run, project)
    r = run("run", str(pipe / "pipeline.py") + ":numbers", "-p", "n=4", "--plain")
    assert r.returncode == 0, r.stdout + r.stderr
    first = r.stdout.splitlines()[0]
    assert first.startswith("run ") and f"submitted to {server.url}" in first, r.stdout
    run_id = first.split()[1]
    assert "code: 5 files" in r.stdout  # pipeline, helpers, lib/__init__, lib/feats, lazy_mod
    assert f"run {run_id} succeeded" in r.stdout
    # the run is the server's, in the project, and carries its package
    view = server.admin.get(f"/api/v1/projects/{project}/runs/{run_id}").json()
    assert view["state"] == "succeeded" and view["params"]["n"] == 4
    digest = view["labels"]["package"].removeprefix("sha256:")
    pkg = server.admin.get(f"/api/v1/projects/{project}/packages/{digest}").json()
    assert sorted(pkg["files"]) == ["helpers.py", "lazy_mod.py", "lib/__init__.py",
                                    "lib/feats.py", "pipeline.py"]
    # the same commands read it back
    listed = run("runs")
    assert run_id in listed.stdout and "succeeded" in listed.stdout, listed.stderr
    assert [x["id"] for x in json.loads(run("runs", "--json").stdout)] == [run_id]
    shown = run("show", run_id)
    assert shown.returncode == 0, shown.stderr
    for s in ("make", "total", "shout", "succeeded", f"project {project}"):
        assert s in shown.stdout, (s, shown.stdout)
    logs = run("logs", run_id)
    assert logs.returncode == 0, logs.stderr
    assert "[make#1] making 4 numbers" in logs.stdout
    assert "[total#1] sum is 12" in logs.stdout
    assert "[total#1 stderr] a line on stderr" in logs.stdout
    assert "[shout#1] TOTAL IS 12" in logs.stdout
    followed = run("logs", run_id, "--follow")
    assert followed.returncode == 0, followed.stderr
    assert sorted(followed.stdout.splitlines()) == sorted(logs.stdout.splitlines())
    one = run("logs", run_id, "total")
    assert one.stdout.splitlines() == ["[total#1] sum is 12", "[total#1 stderr] a line on stderr"]
    # the same files again: the same package (digest), already on the server
    again = run("run", str(pipe / "pipeline.py:numbers"), "-p", "n=4", "--plain",
                "--priority", "7")
    assert again.returncode == 0, again.stderr
    second = again.stdout.split()[1]
    v2 = server.admin.get(f"/api/v1/projects/{project}/runs/{second}").json()
    assert v2["labels"]["package"] == view["labels"]["package"]
    assert v2["labels"]["priority"] == 7
    # a compiled spec submits too: its code is found from the spec's references
    spec = pipe.parent / "spec.json"
    compiled = run("compile", str(pipe / "pipeline.py:numbers"), "-p", "n=5", "-o", str(spec))
    assert compiled.returncode == 0, compiled.stderr
    third = run("run", str(spec), "--plain")
    assert third.returncode == 0, third.stdout + third.stderr
    assert "code: 5 files" in third.stdout and "succeeded" in third.stdout
    assert "[shout#1] TOTAL IS 20" in run("logs", third.stdout.split()[1]).stdout
    deleted = run("delete", third.stdout.split()[1], "-y")
    assert deleted.returncode == 0 and "deleted run" in deleted.stdout, deleted.stderr
    assert "has no run" in _one_error(run("show", third.stdout.split()[1]))
    # Python: get_run and list_runs through the server
    code = (f"import insitu; r = insitu.get_run({run_id!r}); print(r.state, r.pipeline, "
            "sorted(t.id for t in r.tasks())); print(len(insitu.list_runs()))")
    py = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        env=env, timeout=120)
    assert py.returncode == 0, py.stderr
    assert py.stdout.splitlines() == ["succeeded numbers ['make', 'shout', 'total']", "2"]


def test_a_bad_parameter_is_refused_before_anything_is_sent(
        server: Server, user: tuple[CLI, Path, dict[str, str]]) -> None:
    run, pipe, _ = user
    project = _project(server)
    _login(server, run, project)
    err = _one_error(run("run", str(pipe / "pipeline.py:numbers"), "-p", "n=many"))
    assert "'n'" in err and "int" in err
    r = server.admin.post(f"/api/v1/projects/{project}/runs",
                          json={"spec": {"steps": []}, "labels": {"priority": "high"}})
    assert r.status_code == 400 and "priority must be a whole number" in r.json()["detail"]
    listed = server.admin.get(f"/api/v1/projects/{project}/runs").json()
    assert listed["items"] == []


def _engine_here(s: Server, env: dict[str, str], *args: str, **kw: object
                 ) -> subprocess.CompletedProcess[str]:
    """A run made by a real engine writing into the server's database and INSITU_HOME (as
    the server's own engines do), in its project 'default'."""
    e = {**env, "INSITU_HOME": str(s.home), "INSITU_DB_URL": s.db_url, "INSITU_SERVER": ""}
    return subprocess.run([sys.executable, "-m", "insitu", "run", *args, "--plain", "--no-cache"],
                          capture_output=True, text=True, env=e, timeout=240, **kw)


def test_reads_of_a_run_the_server_holds(
        server: Server, user: tuple[CLI, Path, dict[str, str]]) -> None:
    run, pipe, env = user
    made = _engine_here(server, env, str(pipe / "pipeline.py:numbers"), "-p", "n=4")
    assert made.returncode == 0, made.stderr
    run_id = made.stdout.split()[1]
    _login(server, run, "default")
    listed = run("runs", "-n", "500")
    assert run_id in listed.stdout, listed.stderr
    assert run_id in {x["id"] for x in json.loads(run("runs", "--json", "-n", "500").stdout)}
    shown = run("show", run_id)
    assert shown.returncode == 0, shown.stderr
    for s in ("make", "total", "shout", "succeeded", f"server {server.url} project default",
              "logged metrics and params", "optimizer=sgd"):
        assert s in shown.stdout, (s, shown.stdout)
    loss = [c for c in next(line for line in shown.stdout.splitlines()
                            if "loss" in line).split() if c != "│"]
    assert loss == ["total", "loss", "0.25", "0.25", "0.9", "3"]  # last, min, max, points
    as_json = json.loads(run("show", run_id, "--json").stdout)
    assert as_json["run"]["id"] == run_id
    assert {t["id"] for t in as_json["tasks"]} == {"make", "total", "shout"}
    assert {a["task_id"] for a in as_json["attempts"]} == {"make", "total", "shout"}
    logs = run("logs", run_id)
    assert logs.returncode == 0, logs.stderr
    want = ["[make#1] making 4 numbers", "[total#1] sum is 12",
            "[total#1 stderr] a line on stderr", "[shout#1] TOTAL IS 12"]
    assert logs.stdout.splitlines() == want
    followed = run("logs", run_id, "--follow")
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout.splitlines() == want
    assert run("logs", run_id, "total").stdout.splitlines() == want[1:3]
    assert run("logs", run_id, "total", "--follow").stdout.splitlines() == want[1:3]
    err = _one_error(run("logs", run_id, "totl"))
    assert f"run {run_id} has no step 'totl'" in err and "did you mean 'total'" in err
    err = _one_error(run("logs", run_id, "total", "--attempt", "3"))
    assert "has 1 attempt(s), not 3" in err
    why = run("why", run_id)
    assert why.returncode == 0 and "no step is waiting" in why.stdout, why.stderr
    err = _one_error(run("show", "nosuchrun"))
    assert "has no run 'nosuchrun'" in err
    # a failed run: explain says why, as locally
    bad = _engine_here(server, env, str(pipe / "pipeline.py:fails"))
    assert bad.returncode == 1, bad.stderr
    bad_id = bad.stdout.split()[1]
    local = subprocess.run([sys.executable, "-m", "insitu", "explain", bad_id],
                           capture_output=True, text=True, timeout=120,
                           env={**env, "INSITU_HOME": str(server.home),
                                "INSITU_DB_URL": server.db_url, "INSITU_SERVER": ""})
    remote = run("explain", bad_id)
    assert remote.returncode == 0, remote.stderr
    assert "ValueError" in remote.stdout and "x must be positive, got -1" in remote.stdout
    assert remote.stdout == local.stdout
    shown = run("show", bad_id)
    assert "failed" in shown.stdout and f"why: insitu explain {bad_id}" in shown.stdout


SERVED = str(Path(__file__).parents[1] / "pipelines" / "served.py")


def test_models_datasets_and_studies_read_from_the_server(
        server: Server, user: tuple[CLI, Path, dict[str, str]], tmp_path: Path) -> None:
    """``models ls/show``, ``datasets ls/show`` and ``tune show`` print from the server what
    they print locally for the same objects; commands that change the local store are
    refused while a server is configured."""
    run, _, env = user
    here = {**env, "INSITU_HOME": str(server.home), "INSITU_DB_URL": server.db_url,
            "INSITU_SERVER": ""}

    def local(*args: str) -> subprocess.CompletedProcess[str]:
        """The command on the server's own store, as a user of that machine runs it."""
        return subprocess.run([sys.executable, "-m", "insitu", *args], capture_output=True,
                              text=True, timeout=240, env=here, cwd=tmp_path)

    made = _engine_here(server, env, f"{SERVED}:outputs")
    assert made.returncode == 0, made.stdout + made.stderr
    outputs = made.stdout.split()[1]
    tuned = _engine_here(server, env, f"{SERVED}:study")
    assert tuned.returncode == 0, tuned.stdout + tuned.stderr
    study = tuned.stdout.split()[1]
    model, dataset = f"m-{uuid.uuid4().hex[:6]}", f"d-{uuid.uuid4().hex[:6]}"
    r = local("models", "register", model, "--run", outputs, "--step", "fit", "--alias",
              "champion", "--tag", "team=vision", "--description", "first fit")
    assert r.returncode == 0, r.stderr
    data = tmp_path / "shards"
    data.mkdir()
    for i in range(3):
        (data / f"part-{i}.csv").write_text(f"x\n{i}\n")
    r = local("datasets", "add", dataset, str(data / "*.csv"))
    assert r.returncode == 0, r.stderr
    _login(server, run, "default")

    for args in (("models", "show", model), ("models", "show", model, "--json"),
                 ("datasets", "show", dataset), ("datasets", "show", dataset, "--json"),
                 ("tune", "show", f"{study}/bowl"), ("tune", "show", study)):
        mine, theirs = local(*args), run(*args)
        assert theirs.returncode == 0 == mine.returncode, (args, theirs.stderr, mine.stderr)
        assert theirs.stdout == mine.stdout, args
    shown = run("models", "show", model).stdout
    for s in (f"model {model}", "version 1  @champion", f"from run {outputs}", "team=vision",
              "first fit"):
        assert s in shown, (s, shown)
    shown = run("tune", "show", study).stdout
    assert f"study {study}/bowl" in shown and "3/3 trials ended: 3 complete" in shown
    assert "parameter importance" in shown
    assert "3 shards" in run("datasets", "show", dataset).stdout
    # the lists: the same row for the same object (the server lists only its project's)
    for group, name in (("models", model), ("datasets", dataset)):
        remote_rows = {x["name"]: x for x in json.loads(run(group, "ls", "--json").stdout)}
        local_rows = {x["name"]: x for x in json.loads(local(group, "ls", "--json").stdout)}
        assert remote_rows[name] == local_rows[name]
        row = next(line for line in run(group, "ls").stdout.splitlines() if name in line)
        assert row in local(group, "ls").stdout.splitlines()
    # not found: the server's message
    err = _one_error(run("models", "show", "nosuchmodel"))
    assert "has no model 'nosuchmodel'" in err
    err = _one_error(run("tune", "show", f"{outputs}/fit"))
    assert f"run {outputs} has no tuning step" in err
    err = _one_error(run("tune", "show", outputs))
    assert f"run {outputs} has no tuning step" in err
    # the registry's changes act on the server's project, as they do locally
    r = run("models", "register", model, "--run", outputs, "--step", "fit", "--alias", "prod")
    assert r.returncode == 0, r.stderr
    assert f"registered {model}:2 from run {outputs} step fit as @prod" in r.stdout
    assert run("models", "alias", model, "champion", "2").returncode == 0
    api = f"/api/v1/projects/default/models/{model}"

    def versions() -> list[tuple[int, list[str]]]:
        return [(v["version"], v["aliases"]) for v in server.admin.get(api).json()["versions"]]

    assert versions() == [(1, []), (2, ["champion", "prod"])]
    err = _one_error(run("models", "delete", model, "2"))
    assert "is aliased as champion, prod" in err
    assert run("models", "delete", model, "1").returncode == 0
    assert versions() == [(2, ["champion", "prod"])]
    r = server.admin.post(f"{api}/versions", json={"run": "nosuchrun", "step": "fit"})
    assert r.status_code == 404 and "has no run 'nosuchrun'" in r.json()["detail"]
    audit = {a["action"] for a in server.admin.get(
        "/api/v1/audit", params={"since": time.time() - 600}).json()["items"]}
    assert {"model.register", "model.alias", "model.delete"} <= audit
    # datasets and tuning change this machine's store: refused while a server is configured
    for args in (("datasets", "add", dataset, str(data / "*.csv")),
                 ("tune", "run", f"{SERVED}:bowl", "--space", '{"x": "uniform(0, 1)"}',
                  "--metric", "loss")):
        err = _one_error(run(*args))
        assert f"changes this machine's store, not the server {server.url}" in err, err
        assert f"INSITU_SERVER= insitu {args[0]} {args[1]}" in err, err


def test_cancel_a_run_on_the_server(server: Server, user: tuple[CLI, Path, dict[str, str]],
                                    tmp_path: Path) -> None:
    run, pipe, env = user
    _login(server, run, "default")
    marker = tmp_path / "never"
    e = {**env, "INSITU_HOME": str(server.home), "INSITU_DB_URL": server.db_url,
         "INSITU_SERVER": ""}
    proc = subprocess.Popen([sys.executable, "-m", "insitu", "run",
                             str(pipe / "pipeline.py:waits"), "-p", f"marker={marker}",
                             "--plain"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=e, cwd=tmp_path)
    try:
        run_id = _wait_for_running(server, "default", pipeline="waits")
        c = run("cancel", run_id)
        assert c.returncode == 0, c.stderr
        assert f"run {run_id} cancelled." in c.stdout, c.stdout
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, (out, err)  # the local engine stopped, as asked
    assert f"run {run_id} is already cancelled." in run("cancel", run_id).stdout
    assert "cancelled" in run("show", run_id).stdout
    err = _one_error(run("cancel", "nosuchrun"))
    assert "has no run 'nosuchrun'" in err


def test_ctrl_c_detaches_then_cancel_and_resume(
        server: Server, user: tuple[CLI, Path, dict[str, str]], tmp_path: Path) -> None:
    run, pipe, env = user
    project = _project(server)
    _login(server, run, project)
    marker = tmp_path / "go"
    # as from a terminal: Ctrl-C at its default (a test runner's worker may ignore SIGINT,
    # and a process started with SIGINT ignored keeps ignoring it)
    proc = subprocess.Popen([sys.executable, "-m", "insitu", "run",
                             str(pipe / "pipeline.py:waits"), "-p", f"marker={marker}",
                             "--plain"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=tmp_path,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        run_id = _wait_for_running(server, project)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, (out, err)
    assert f"detached: run {run_id} goes on on {server.url}" in err
    assert f"insitu cancel {run_id}" in err and "Traceback" not in err
    view = server.admin.get(f"/api/v1/projects/{project}/runs/{run_id}").json()
    assert view["state"] == "running"
    err = _one_error(run("delete", run_id, "-y"))  # the server's refusal, as it said it
    assert f"run {run_id} is still running" in err and "cancel it first" in err
    logs = _wait_for(lambda: run("logs", run_id, "wait_for").stdout, "waiting for")
    assert f"[wait_for#1] waiting for {marker}" in logs
    c = run("cancel", run_id)
    assert c.returncode == 0, c.stderr
    assert f"run {run_id} cancelled." in c.stdout, c.stdout
    assert "is already cancelled" in run("cancel", run_id).stdout
    shown = run("show", run_id)
    assert "cancelled" in shown.stdout
    marker.write_text("go")
    res = run("resume", run_id, "--plain")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"resuming run {run_id}" in res.stdout
    assert f"run {run_id} succeeded" in res.stdout
    assert "already succeeded" in run("resume", run_id).stdout


def _wait_for_running(s: Server, project: str, timeout: float = 120,
                      pipeline: str | None = None) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = s.admin.get(f"/api/v1/projects/{project}/runs",
                            params={"pipeline": pipeline} if pipeline else {}).json()["items"]
        if items and items[0]["state"] == "running" and any(
                t["state"] == "running" for t in s.admin.get(
                    f"/api/v1/projects/{project}/runs/{items[0]['id']}").json()["tasks"]):
            return str(items[0]["id"])
        time.sleep(0.2)
    raise AssertionError("no run of the project started running")


def _wait_for(read: Callable[[], str], text: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        out = read()
        if text in out or time.monotonic() > deadline:
            return out
        time.sleep(0.2)


def test_python_run_on_the_server(server: Server, user: tuple[CLI, Path, dict[str, str]]
                                  ) -> None:
    run, pipe, env = user
    project = _project(server)
    _login(server, run, project)
    code = textwrap.dedent("""
        import insitu
        from pipeline import numbers
        r = insitu.run(numbers, n=2)
        print(type(r).__name__, r.id, r.state, r.params)
        print(r.logs("total").strip())
        try:
            r.output("total")
        except insitu.errors.UserError as e:
            print("output:", e.message.split(":")[0])
    """)
    py = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        env=env, cwd=pipe, timeout=240)
    assert py.returncode == 0, py.stderr
    lines = py.stdout.splitlines()
    assert lines[0].startswith("RemoteRun ") and lines[0].endswith("succeeded {'n': 2}")
    assert lines[1] == "sum is 2"
    assert lines[2].startswith("output: run ")


def test_a_notebook_pipeline_submits_without_a_package(
        server: Server, user: tuple[CLI, Path, dict[str, str]], tmp_path: Path) -> None:
    run, _, env = user
    project = _project(server)
    _login(server, run, project)
    cell = textwrap.dedent("""
        import insitu

        @insitu.step
        def square(x: int) -> int:
            print("squaring", x)
            return x * x

        @insitu.pipeline
        def cell(x: int = 3):
            square(x)

        r = insitu.run(cell, x=5)
        print(r.id, r.state, r.record.labels.get("package"))
    """)
    empty = tmp_path / "empty"
    empty.mkdir()
    py = subprocess.run([sys.executable, "-"], input=cell, capture_output=True, text=True,
                        env=env, cwd=empty, timeout=240)
    assert py.returncode == 0, py.stderr
    run_id, state, package = py.stdout.split()
    assert state == "succeeded" and package == "None"
    assert "[square#1] squaring 5" in run("logs", run_id).stdout


def test_a_package_over_the_servers_limit_gets_its_message(
        user: tuple[CLI, Path, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
        ) -> None:
    run, pipe, _ = user
    home = tmp_path_factory.mktemp("small-server")
    s = _start_with(f"sqlite:///{home / 'server.db'}", home, "--max-package", "1KiB")
    try:
        (pipe / "lib" / "feats.py").write_text(
            "def label(s):\n    return f'sum is {s}'\n" + "".join(
                f"# {uuid.uuid4().hex}{uuid.uuid4().hex}\n" for _ in range(200)))
        _login(s, run, "default")
        err = _one_error(run("run", str(pipe / "pipeline.py:numbers")))
        assert "this server accepts packages up to 1.0 KiB" in err, err
        assert "fix:" in err and "--max-package" in err
        assert s.admin.get("/api/v1/projects/default/runs").json()["items"] == []
    finally:
        stop_server(s)


def _start_with(db_url: str, home: Path, *extra: str) -> Server:
    """A server like ``start_server``'s, with extra options for ``insitu server``."""
    init = run_cli(home, "server", "init", "--db", db_url)
    assert init.returncode == 0, init.stderr
    port = _free_port()
    env = {**os.environ, "INSITU_HOME": str(home)}
    log = open(home / "server.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([sys.executable, "-m", "insitu", "server", "--db", db_url,
                             "--port", str(port), *extra], stdout=log,
                            stderr=subprocess.STDOUT, env=env)
    s = Server(url=f"http://127.0.0.1:{port}", db_url=db_url, home=home,
               admin_token=init.stdout.strip().splitlines()[-1], proc=proc)
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise AssertionError((home / "server.log").read_text())
        try:
            if httpx.get(f"{s.url}/api/v1/health", timeout=5).status_code == 200:
                return s
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            stop_server(s)
            raise AssertionError("server did not answer in 120 s")
        time.sleep(0.1)
