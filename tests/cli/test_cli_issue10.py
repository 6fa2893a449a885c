"""The CLI defects of issue 10: logs, explain, run ids, tables, models, datasets, the store."""

from __future__ import annotations

import ast
import json
import os
import time
from pathlib import Path

import pytest
from _damage import damage_attempts_table

PIPES = Path(__file__).parents[1] / "pipelines"
CASES = str(PIPES / "cli_cases.py")
REPO = Path(__file__).parents[2]


def _run_id(cli, pipeline: str) -> str:  # type: ignore[no-untyped-def]
    runs = json.loads(cli("runs", "--json").stdout)
    return next(r["id"] for r in runs if r["pipeline"] == pipeline)


# -- defect 1: logs ---------------------------------------------------------------------------


def test_logs_of_a_map_item_of_a_silent_step_and_of_unknown_ones(cli, home: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("run", f"{CASES}:map_fails", "--plain").returncode == 1
    rid = _run_id(cli, "map_fails")
    item = cli("logs", rid, "evaluate[1]")
    assert item.returncode == 0, item.stderr
    assert "[evaluate[1]#1] evaluating item 1" in item.stdout
    assert "[evaluate[1]#1 stderr] item 1 on stderr" in item.stdout
    assert "evaluate[2]" not in item.stdout
    every = cli("logs", rid, "evaluate")  # the map: all its items
    assert "evaluating item 1" in every.stdout
    for i in (0, 2):  # run, or never started once item 1 failed: either way it is said
        assert f"evaluating item {i}" in every.stdout \
            or f"step evaluate[{i}]: no output: it never ran" in every.stderr, every
    silent = cli("logs", rid, "items")
    assert silent.returncode == 0 and silent.stdout == ""
    assert "step items: attempt 1 printed nothing" in silent.stderr
    unknown = cli("logs", rid, "nope")
    assert unknown.returncode == 2
    assert f"run {rid} has no step 'nope'" in unknown.stderr
    assert "steps: evaluate, items" in unknown.stderr
    for bad in (["--attempt", "0"], ["--attempt", "2"]):
        r = cli("logs", rid, "evaluate[1]", *bad)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "has 1 attempt(s), not 2" in cli("logs", rid, "evaluate[1]", "--attempt",
                                            "2").stderr


def test_logs_follow_stops_when_the_engine_is_gone(cli, home: Path) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    from insitu.store import open_store

    assert cli("run", f"{CASES}:scanned", "-p", "n=2").returncode == 0
    rid = _run_id(cli, "scanned")
    store = open_store()
    rec = store.get_run(rid)  # as a kill -9 leaves it: running, the engine's pid gone
    store.put(dataclasses.replace(rec, state="running", ended_at=None, engine_pid=2**22 + 7,
                                  heartbeat_at=time.time() - 3600))
    r = cli("logs", rid, "-f", timeout=60)
    assert r.returncode == 0
    assert "scanning 1" in r.stdout
    assert f"insitu resume {rid}" in r.stderr


# -- defects 2 and 3: explain -----------------------------------------------------------------


def test_explain_names_the_users_line_not_the_librarys(cli, home: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("run", f"{CASES}:map_fails", "--plain").returncode == 1
    rid = _run_id(cli, "map_fails")
    here = cli("explain", rid, cwd=REPO)  # the pipeline lies below the current directory
    out = here.stdout
    assert here.returncode == 0, here.stderr
    assert "failed at step 'evaluate[1]'" in out
    assert "KeyError: 'b'" in out
    assert "at tests/pipelines/cli_cases.py:14 in lookup" in out
    assert "fix the code at tests/pipelines/cli_cases.py:14" in out
    assert "raised inside library code called from there" in out
    lib = out.index("raised inside library code")
    assert "pandas/core/indexes/base.py" in out[lib:]
    assert "site-packages" not in out  # neither location nor fix nor frames name it
    assert "insitu run tests/pipelines/cli_cases.py:map_fails" in out
    elsewhere = cli("explain", rid, cwd=tmp_path).stdout  # not below: an absolute path
    assert f"insitu run {CASES}:map_fails" in elsewhere
    assert "../" not in elsewhere


def test_explain_shows_every_failed_step_and_takes_a_step(cli, home: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("run", f"{CASES}:two_failures", "--plain").returncode == 1
    rid = _run_id(cli, "two_failures")
    out = cli("explain", rid).stdout
    assert "2 steps failed; the first is shown" in out
    assert "also failed:" in out
    for step in ("bad_lookup", "leaky"):
        assert f"insitu explain {rid} {step}" in out or f"failed at step '{step}'" in out
    one = cli("explain", rid, "bad_lookup")
    assert one.returncode == 0
    assert "step 'bad_lookup' of run" in one.stdout and "KeyError: 'b'" in one.stdout
    assert "also failed" not in one.stdout
    other = cli("explain", rid, "leaky").stdout
    assert "cannot be serialised" in other and "generator" in other
    unknown = cli("explain", rid, "nope")
    assert unknown.returncode == 2 and "steps: bad_lookup, leaky" in unknown.stderr
    assert cli("run", f"{CASES}:map_fails", "--plain").returncode == 1
    mid = _run_id(cli, "map_fails")
    item = cli("explain", mid, "evaluate[1]")
    assert item.returncode == 0 and "step 'evaluate[1]' of run" in item.stdout
    fine = cli("explain", mid, "items")
    assert fine.returncode == 0 and "nothing failed there" in fine.stdout
    assert "failed steps of this run: evaluate[1]" in fine.stdout


def test_frames_are_classified_by_path() -> None:
    import json as stdlib_json

    import pandas

    import insitu
    from insitu._frames import frame_where, frames_with_where

    assert frame_where(pandas.__file__) == "library"
    assert frame_where(stdlib_json.__file__) == "stdlib"
    assert frame_where("<frozen importlib._bootstrap>") == "stdlib"
    assert frame_where(insitu.__file__) == "insitu"
    assert frame_where(CASES) == "user"
    assert frame_where("pandas/_libs/index.pyx") == "library"
    given = [{"file": CASES, "line": 1, "function": "f", "code": None, "where": "library"}]
    assert frames_with_where(given)[0]["where"] == "library"  # a recorded where is kept


# -- defect 13 ----------------------------------------------------------------------------------


def test_an_ambiguous_run_prefix_lists_the_candidates(cli, home: Path) -> None:  # type: ignore[no-untyped-def]
    from insitu.store import RunRecord, open_store

    store = open_store()
    spec = {"name": "p", "steps": [], "parameters": []}
    for rid, pipe in (("abc111111111", "first"), ("abc222222222", "second")):
        store.put(RunRecord(id=rid, pipeline=pipe, state="succeeded", spec=spec, params={},
                            created_at=time.time()))
    r = cli("show", "abc")
    assert r.returncode == 2
    assert "abc111111111 (first)" in r.stderr and "abc222222222 (second)" in r.stderr
    assert cli("show", "abc1").returncode == 0


def test_runs_cuts_with_an_ellipsis_and_says_what_it_hides(cli, home: Path) -> None:  # type: ignore[no-untyped-def]
    long = "x" * 90
    assert cli("run", f"{PIPES / 'basic.py'}:fanout", "-p", "n=1", "-p",
               f"mode={long}").returncode == 0
    wide = cli("runs", env={"COLUMNS": "200"}).stdout
    assert "mode=xxxx" in wide and "…" in wide and long not in wide
    narrow = cli("runs", env={"COLUMNS": "50"})
    assert "not shown" in narrow.stdout and "--json" in narrow.stdout
    rid = _run_id(cli, "fanout")
    assert rid in narrow.stdout  # ids are never cut
    for n in ("0", "-1", "99999999999999999999"):
        r = cli("runs", "-n", n)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr


def test_metrics_tables_sort_map_items_in_natural_order(cli, home: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("run", f"{CASES}:scanned").returncode == 0
    out = cli("show", _run_id(cli, "scanned")).stdout
    rows = [line.split()[1] for line in out.splitlines() if "│ scan[" in line]
    assert rows == [f"scan[{i}]" for i in range(12)], rows


def test_models_help_names_only_real_subcommands(cli, home: Path) -> None:  # type: ignore[no-untyped-def]
    out = cli("models", "--help").stdout
    listed = out.split("Commands:")[1].split()
    subcommands = {w for w in listed if w in ("alias", "delete", "ls", "register", "show",
                                              "load")}
    assert subcommands == {"alias", "delete", "ls", "register", "show"}
    text = out.split("Commands:")[0]
    assert text.count("load") == text.count("insitu.models.load")


def test_register_with_a_bad_alias_leaves_no_version(cli, home: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("run", f"{CASES}:scanned", "-p", "n=1").returncode == 0
    rid = _run_id(cli, "scanned")
    for alias in ("bad alias", ""):
        r = cli("models", "register", "m", "--run", rid, "--step", "quiet", "--alias", alias)
        assert r.returncode == 2 and "invalid alias" in r.stderr, r.stderr
    assert "no model named 'm'" in cli("models", "show", "m").stderr
    r = cli("models", "register", "m" * 10_000, "--run", rid, "--step", "quiet")
    assert r.returncode == 2 and "at most 128 characters" in r.stderr


def test_datasets_add_refuses_an_unknown_node_and_a_fifo(cli, home: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "part-0.csv"
    data.write_text("a\n1\n")
    r = cli("datasets", "add", "ds", str(data), "--node", "nod-1")
    assert r.returncode == 2
    assert "no node named 'nod-1'" in r.stderr and "local" in r.stderr
    assert "--new-node" in r.stderr
    assert cli("datasets", "ls", "--json").stdout.strip() == "[]"  # nothing half-written
    ok = cli("datasets", "add", "ds", str(data), "--node", "nod-1", "--new-node")
    assert ok.returncode == 0, ok.stderr
    again = cli("datasets", "add", "ds2", str(data), "--node", "nod-1")  # now a known node
    assert again.returncode == 0, again.stderr
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    r = cli("datasets", "add", "ds3", str(fifo), timeout=60)
    assert r.returncode == 2 and "not a regular file or folder" in " ".join(r.stderr.split())


def test_datasets_add_names_the_missing_fsspec_package(cli, home: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("fsspec")
    try:
        import s3fs  # noqa: F401
        pytest.skip("s3fs is installed here")
    except ImportError:
        pass
    r = cli("datasets", "add", "ds", "s3://bucket/key")
    assert r.returncode == 2 and "pip install s3fs" in r.stderr, r.stderr


def test_run_refuses_a_parameter_twice_and_nan(cli, home: Path) -> None:  # type: ignore[no-untyped-def]
    r = cli("run", f"{PIPES / 'tracked.py'}:tracked", "-p", "epochs=1", "-p", "epochs=2")
    assert r.returncode == 2 and "given twice" in r.stderr
    r = cli("run", f"{PIPES / 'tracked.py'}:tracked", "-p", "lr=nan")
    assert r.returncode == 2 and "is nan" in r.stderr and "finite" in r.stderr
    assert json.loads(cli("runs", "--json").stdout) == []


def test_output_paths_are_checked_and_a_full_disk_is_reported(cli, home: Path,
                                                              tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target = f"{CASES}:scanned"
    missing = cli("compile", target, "-o", str(tmp_path / "no" / "spec.json"))
    assert missing.returncode == 2 and "does not exist" in " ".join(missing.stderr.split())
    if Path("/dev/full").exists():
        full = cli("compile", target, "-o", "/dev/full")
        assert full.returncode == 1 and "No space left on device" in full.stderr
        assert "wrote" not in full.stdout
        assert cli("run", target, "-p", "n=2").returncode == 0
        png = cli("metrics", _run_id(cli, "scanned"), "--png", "/dev/full")
        assert png.returncode == 1 and "wrote" not in png.stdout, png.stdout + png.stderr


# -- the store: damaged, misplaced, read-only --------------------------------------------------


def test_a_damaged_database_is_refused_and_left_as_it_was(cli, home: Path,
                                                          tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("run", f"{CASES}:scanned", "-p", "n=2").returncode == 0
    rid = _run_id(cli, "scanned")
    db = home / "insitu.db"
    damage_attempts_table(db)
    before = db.read_bytes()
    data = tmp_path / "d.csv"
    data.write_text("a\n")
    for args in (["runs"], ["show", rid], ["cancel", rid], ["delete", "-y", rid],
                 ["datasets", "add", "d", str(data)], ["run", f"{CASES}:scanned"]):
        r = cli(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "is corrupted" in r.stderr and ".recover" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    assert db.read_bytes() == before


def test_a_home_that_is_a_file_and_a_database_that_is_a_folder(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "afile"
    f.write_text("x")
    r = cli("runs", env={"INSITU_HOME": str(f)})
    assert r.returncode == 2 and "is a file, not a folder" in r.stderr
    d = tmp_path / "h"
    (d / "insitu.db").mkdir(parents=True)
    r = cli("runs", env={"INSITU_HOME": str(d)})
    assert r.returncode == 2 and "is a folder, not an SQLite file" in r.stderr


def test_delete_on_a_read_only_database(cli, home: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("run", f"{CASES}:scanned", "-p", "n=1").returncode == 0
    rid = _run_id(cli, "scanned")
    url = f"sqlite:///file:{home / 'insitu.db'}?mode=ro&uri=true"
    r = cli("delete", "-y", rid, env={"INSITU_DB_URL": url})
    assert r.returncode == 2 and "is read-only" in r.stderr and "fix:" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "sqlalchemy" not in r.stderr.lower()
    assert cli("show", rid).returncode == 0  # still there


def test_user_values_with_brackets_print_literally(cli, home: Path) -> None:  # type: ignore[no-untyped-def]
    for args in (["show", "[/]"], ["models", "show", "[/]"], ["datasets", "show", "[/]"],
                 ["logs", "[bold]x[/]"]):
        r = cli(*args)
        assert r.returncode == 2, r.stderr
        assert "MarkupError" not in r.stderr and "Traceback" not in r.stderr
        assert "[/]" in r.stderr or "[bold]x[/]" in r.stderr


# -- the import circle ----------------------------------------------------------------------------


def test_command_modules_do_not_import_the_app() -> None:
    """cli/_app loads the command modules; none of them imports cli/_app back."""
    for name in ("_tracking", "_models", "_datasets", "_explain", "_render", "_common"):
        tree = ast.parse((REPO / "src" / "insitu" / "cli" / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.module != "insitu.cli._app", f"cli/{name}.py imports cli/_app"
