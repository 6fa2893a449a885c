"""The real ``insitu`` command in subprocesses: output, exit codes, and bad input."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

PIPES = Path(__file__).parents[1] / "pipelines"
BASIC = str(PIPES / "basic.py")


def test_run_show_runs_logs(cli, home: Path) -> None:  # type: ignore[no-untyped-def]
    r = cli("run", f"{BASIC}:fanout", "-p", "n=3")
    assert r.returncode == 0, r.stderr
    assert "succeeded" in r.stdout
    runs = json.loads(cli("runs", "--json").stdout)
    assert len(runs) == 1 and runs[0]["state"] == "succeeded" and runs[0]["params"]["n"] == 3
    rid = runs[0]["id"]
    show = cli("show", rid)
    assert show.returncode == 0
    for word in ("square", "3/3 done", "peak memory", "cpu time", "skipped"):
        assert word in show.stdout, word
    data = json.loads(cli("show", rid, "--json").stdout)
    assert {t["id"] for t in data["tasks"]} >= {"make_list", "square", "square[2]", "total"}
    assert all(a["peak_memory"] > 0 for a in data["attempts"])
    again = cli("run", f"{BASIC}:fanout", "-p", "n=3")
    assert "cache hit" in again.stdout
    assert len(json.loads(cli("runs", "--json", "--status", "succeeded").stdout)) == 2
    assert json.loads(cli("runs", "--json", "--pipeline", "other").stdout) == []


def test_logs_of_a_step_and_attempt(cli, home: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    counter = tmp_path / "c"
    r = cli("run", f"{BASIC}:retrying", "-p", "fail_times=1",
            env={"INSITU_TEST_COUNTER": str(counter)})
    assert r.returncode == 0, r.stdout + r.stderr
    rid = json.loads(cli("runs", "--json").stdout)[0]["id"]
    first = cli("logs", rid, "flaky", "--attempt", "1")
    assert "ConnectionError: transient failure 1" in first.stdout  # the traceback is in the log
    logs = cli("logs", rid)
    assert logs.returncode == 0
    bad = cli("logs", rid, "flaky", "--attempt", "5")
    assert bad.returncode == 2 and "has 2 attempt(s), not 5" in bad.stderr


def test_failed_run_exit_code_and_explain_user_error(cli, home: Path) -> None:  # type: ignore[no-untyped-def]
    r = cli("run", f"{BASIC}:failing_with_exit")
    assert r.returncode == 1
    assert "insitu explain" in r.stdout
    rid = json.loads(cli("runs", "--json").stdout)[0]["id"]
    e = cli("explain", rid)
    assert e.returncode == 0
    out = e.stdout
    assert "failed at step 'broken'" in out
    assert "ZeroDivisionError: integer division or modulo by zero" in out
    assert "pipelines/basic.py:" in out and "return x // 0" in out  # as the user can paste it
    assert "fix:" in out and "insitu run" in out


def test_explain_out_of_memory(cli, home: Path) -> None:  # type: ignore[no-untyped-def]
    r = cli("run", f"{BASIC}:oom", "-p", "seconds=0.5", env={"INSITU_NODE_CPUS": "4"})
    assert r.returncode == 1
    rid = json.loads(cli("runs", "--json").stdout)[0]["id"]
    out = cli("explain", rid).stdout
    assert "out of memory" in out and "memory limit  300.0 MiB" in out
    assert "peak memory" in out and 'memory="768MiB"' in out


def test_compile_writes_a_valid_spec_and_run_accepts_it(cli, home: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "spec.json"
    r = cli("compile", f"{BASIC}:fanout", "-p", "n=2", "-o", str(out))
    assert r.returncode == 0, r.stderr
    spec = json.loads(out.read_text())
    from insitu.spec import validate_spec

    validate_spec(spec)
    assert spec["name"] == "fanout" and spec["spec_version"] == 1
    r = cli("run", str(out), "-p", "n=2")
    assert r.returncode == 0, r.stderr


def test_cancel_of_a_run_without_engine(cli, home: Path) -> None:  # type: ignore[no-untyped-def]
    import socket
    import time

    from insitu.store import RunRecord, open_store

    store = open_store(f"sqlite:///{home / 'insitu.db'}")
    store.put(RunRecord(id="orphan000001", pipeline="p", state="running", spec={}, params={},
                        created_at=time.time(), engine_pid=999999, heartbeat_at=time.time(),
                        engine_host=socket.gethostname()))
    r = cli("cancel", "orphan")
    assert r.returncode == 0 and "cancelled" in r.stdout
    assert store.get_run("orphan000001").state == "cancelled"


# -- bad input: one clear message, exit code 2, never a traceback -----------------------

def _clear(r) -> str:  # type: ignore[no-untyped-def]
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert "error:" in r.stderr
    return str(r.stderr)


def test_bad_input_file_that_fails_to_import(cli) -> None:  # type: ignore[no-untyped-def]
    err = _clear(cli("run", str(PIPES / "broken_import.py")))
    assert "NameError" in err and "broken_import.py:4" in err


def test_bad_input_no_pipeline(cli) -> None:  # type: ignore[no-untyped-def]
    err = _clear(cli("run", str(PIPES / "none.py")))
    assert "defines no pipeline" in err and "@insitu.pipeline" in err


def test_bad_input_several_pipelines(cli) -> None:  # type: ignore[no-untyped-def]
    err = _clear(cli("run", str(PIPES / "two.py")))
    assert "several pipelines (first, second)" in err and "two.py:first" in err
    err = _clear(cli("run", f"{PIPES / 'two.py'}:frist"))
    assert "did you mean" in err and "first" in err


def test_bad_input_missing_file(cli) -> None:  # type: ignore[no-untyped-def]
    err = _clear(cli("run", "no/such/file.py"))
    assert "does not exist" in err


def test_bad_input_unknown_and_mistyped_parameters(cli) -> None:  # type: ignore[no-untyped-def]
    err = _clear(cli("run", f"{BASIC}:fanout", "-p", "m=3"))
    assert "unknown parameter 'm'" in err and "n: int = 5" in err
    err = _clear(cli("run", f"{BASIC}:fanout", "-p", "n=three"))
    assert "parameter 'n' expects int, got 'three'" in err and "-p n=3" in err
    err = _clear(cli("run", f"{BASIC}:fanout", "-p", "oops"))
    assert "-p name=value" in err


def test_bad_input_step_called_outside_a_pipeline(cli) -> None:  # type: ignore[no-untyped-def]
    err = _clear(cli("run", str(PIPES / "outside.py")))
    assert "step 's' was called outside a pipeline" in err and "outside.py:14" in err


def test_bad_input_all_validation_problems_at_once(cli) -> None:  # type: ignore[no-untyped-def]
    err = _clear(cli("run", str(PIPES / "invalid.py")))
    assert "(3 problems)" in err
    assert "invalid memory 'lots'" in err and "invalid.py:5" in err
    assert "invalid.py:18" in err and "too many positional arguments" in err
    assert "invalid.py:19" in err and "missing a required argument: 'y'" in err
    assert err.index("invalid.py:5") < err.index("invalid.py:18"), "problems are in file order"


def test_bad_input_unserialisable_output(cli) -> None:  # type: ignore[no-untyped-def]
    r = cli("run", f"{BASIC}:bad_output")
    assert r.returncode == 1
    rid = json.loads(cli("runs", "--json").stdout)[0]["id"]
    out = cli("explain", rid).stdout
    assert "cannot be serialised" in out and "_thread.lock" in out


def test_bad_input_resource_no_node_can_satisfy(cli) -> None:  # type: ignore[no-untyped-def]
    err = _clear(cli("run", f"{BASIC}:gpus", env={"INSITU_NODE_GPUS": ""}))
    assert "asks for 1 CPU, 2.0 GiB memory, 1 GPU of type A100" in err
    assert "no GPUs" in err and "node 'local' has" in err


def test_bad_input_invalid_memory_string(cli) -> None:  # type: ignore[no-untyped-def]
    err = _clear(cli("run", f"{BASIC}:too_big", "-p", "mem=2 gigs"))
    assert "invalid memory '2 gigs'" in err and '"2GiB"' in err


def test_bad_input_unknown_run_id(cli) -> None:  # type: ignore[no-untyped-def]
    for cmd in ("show", "logs", "explain", "resume", "cancel"):
        err = _clear(cli(cmd, "doesnotexist"))
        assert "no run 'doesnotexist'" in err and "insitu runs" in err


def test_bad_input_corrupted_database(cli, home: Path) -> None:  # type: ignore[no-untyped-def]
    home.mkdir(parents=True)
    (home / "insitu.db").write_bytes(b"garbage" * 1000)
    err = _clear(cli("runs"))
    assert "not an SQLite database" in err and "mv " in err


def test_bad_input_foreign_database(cli, home: Path) -> None:  # type: ignore[no-untyped-def]
    home.mkdir(parents=True)
    conn = sqlite3.connect(home / "insitu.db")
    conn.execute("CREATE TABLE orders (id INTEGER)")
    conn.commit()
    conn.close()
    err = _clear(cli("runs"))
    assert "not an insitu database" in err and "orders" in err


def test_why_explains_a_step_waiting_for_resources(home: Path) -> None:
    """A step asking for more GPUs than are free waits, and `insitu why` says why."""
    import os
    import subprocess
    import sys
    import time

    from insitu.store import open_store

    env = {**os.environ, "INSITU_HOME": str(home), "INSITU_NODE_GPUS": "T4:1",
           "INSITU_NODE_CPUS": "4"}
    proc = subprocess.Popen([sys.executable, "-m", "insitu", "run", f"{PIPES / 'gpu_wait.py'}",
                             "--plain"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 30
        reason = None
        while time.time() < deadline and reason is None:
            time.sleep(0.2)
            if not (home / "insitu.db").exists():
                continue
            store = open_store(f"sqlite:///{home / 'insitu.db'}")
            runs = store.list_runs()
            if runs:
                reason = next((t.pending_reason for t in store.list_tasks(runs[0].id)
                               if t.pending_reason), None)
        assert reason is not None, "the waiting step never recorded a reason"
        rid = store.list_runs()[0].id
        r = subprocess.run([sys.executable, "-m", "insitu", "why", rid, "second"], env=env,
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert " ".join(r.stdout.split()) == (
            "second: it cannot be placed now: 0 of 1 node fits: 1 has no free GPU")
        r = subprocess.run([sys.executable, "-m", "insitu", "why", rid, "third"], env=env,
                           capture_output=True, text=True)
        assert "waiting for its inputs from second (pending)" in r.stdout
    finally:
        proc.kill()
        proc.wait()


def test_logs_follow_prints_until_the_run_ends(home: Path) -> None:
    import os
    import subprocess
    import sys
    import time

    from insitu.store import open_store

    env = {**os.environ, "INSITU_HOME": str(home), "INSITU_NODE_CPUS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "insitu", "run", f"{BASIC}:chain_of_sleeps",
                             "-p", "n=3", "-p", "seconds=0.5", "--plain"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        rid = None
        while rid is None and time.time() < deadline:
            time.sleep(0.1)
            if (home / "insitu.db").exists():
                runs = open_store(f"sqlite:///{home / 'insitu.db'}").list_runs()
                rid = runs[0].id if runs else None
        assert rid is not None
        r = subprocess.run([sys.executable, "-m", "insitu", "logs", rid, "--follow"], env=env,
                           capture_output=True, text=True, timeout=90)
        assert r.returncode == 0, r.stderr
        assert "[slow#1] slow 0 done" in r.stdout
        for i in (1, 2):  # many[0] is slow(0, 0.5) again: a cache hit, with no attempt
            assert f"[many[{i}]#1] slow {i} done" in r.stdout
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()


def test_priority_without_a_server_is_refused(cli) -> None:  # type: ignore[no-untyped-def]
    r = cli("run", BASIC, "--priority", "5")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "--priority orders runs waiting for a project's quota on a server" in r.stderr
    assert "insitu login" in r.stderr
    assert cli("runs", "--json").stdout.strip() in ("", "[]")  # nothing ran


def test_a_missing_optional_package_names_the_extra(home: Path) -> None:
    """The server without its extra installed (fastapi made unimportable in that process)."""
    import os
    import subprocess
    import sys

    code = ("import sys; sys.modules['fastapi'] = None; "
            "sys.argv = ['insitu', 'server', '--port', '8499']; "
            "from insitu.cli import main; main()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "INSITU_HOME": str(home)})
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "this command needs fastapi" in r.stderr
    assert 'pip install "insitu[server]"' in r.stderr
