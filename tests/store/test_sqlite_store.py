from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from insitu.errors import StoreError
from insitu.store import SQLStore
from insitu.store._sql import HEAD
from insitu.testing.store_conformance import StoreConformance, make_run


class TestSQLiteStore(StoreConformance):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[SQLStore]:
        s = SQLStore(f"sqlite:///{tmp_path / 'insitu.db'}")
        yield s
        s.close()


def test_wal_mode_and_reopen_keeps_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    s = SQLStore(url)
    s.put(make_run("keep1"))
    s.close()
    conn = sqlite3.connect(tmp_path / "x.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT version_num FROM insitu_alembic_version").fetchone()[0] == HEAD
    conn.close()
    assert SQLStore(url).get_run("keep1").id == "keep1"


def test_corrupted_file_gets_a_clear_error(tmp_path: Path) -> None:
    p = tmp_path / "bad.db"
    p.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreError) as e:
        SQLStore(f"sqlite:///{p}")
    assert str(p) in e.value.message and "not an SQLite database" in e.value.message
    assert e.value.hint and "mv" in e.value.hint


def test_truncated_sqlite_file_gets_a_clear_error(tmp_path: Path) -> None:
    p = tmp_path / "trunc.db"
    s = SQLStore(f"sqlite:///{p}")
    s.put(make_run("r1"))
    s.close()
    for suffix in ("-wal", "-shm"):
        Path(str(p) + suffix).unlink(missing_ok=True)
    data = p.read_bytes()
    p.write_bytes(data[:100] + b"\xff" * (len(data) - 100))
    with pytest.raises(StoreError) as e:
        SQLStore(f"sqlite:///{p}").list_runs()
    assert "corrupted" in e.value.message or "not an insitu" in e.value.message


def test_foreign_database_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "foreign.db"
    conn = sqlite3.connect(p)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError) as e:
        SQLStore(f"sqlite:///{p}")
    assert "not an insitu database" in e.value.message and "customers" in e.value.message


def test_database_from_a_newer_insitu_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "new.db"
    SQLStore(f"sqlite:///{p}").close()
    conn = sqlite3.connect(p)
    conn.execute("UPDATE insitu_alembic_version SET version_num = '9999'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer insitu"):
        SQLStore(f"sqlite:///{p}")


def test_artifact_store_over_a_file_url_and_an_fsspec_url(tmp_path: Path) -> None:
    from insitu.artifacts import ArtifactStore, dump, load

    for url in (f"file://{tmp_path / 'a'}", "memory://insitu-test/artifacts"):
        store = ArtifactStore(url)
        ref = dump({"big": "x" * 40000}, store)
        assert ref["kind"] == "blob" and store.exists(ref["digest"])
        assert load(ref, store) == {"big": "x" * 40000}
        assert store.put(b"same") == store.put(b"same")
        assert not store.exists("0" * 64)


def _old_database(path: Path, revision: str, *inserts: str) -> None:
    """A database at schema ``revision`` holding the rows of ``inserts``."""
    from alembic import command
    from alembic.config import Config

    import insitu.store._sql as sql

    engine = sql._make_engine(f"sqlite:///{path}")
    ini = Path(sql.__file__).parent / "migrations" / "alembic.ini"
    cfg = Config(str(ini))
    cfg.set_main_option("script_location", str(ini.parent))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        for sql_text in inserts:
            conn.exec_driver_sql(sql_text)
    engine.dispose()


def test_upgrade_from_the_first_schema_keeps_runs(tmp_path: Path) -> None:
    """A database written at schema 0001 is upgraded in place when opened."""
    p = tmp_path / "old.db"
    _old_database(p, "0001",
                  "INSERT INTO runs (id, pipeline, state, spec, params, created_at, no_cache,"
                  " backend, cancel_requested, labels) VALUES ('old1', 'p', 'succeeded', '{}',"
                  " '{}', 1.0, 0, 'local', 0, '{}')")
    s = SQLStore(f"sqlite:///{p}")
    assert s.get_run("old1").state == "succeeded"
    conn = sqlite3.connect(p)
    assert conn.execute("SELECT version_num FROM insitu_alembic_version").fetchone()[0] == HEAD
    assert conn.execute("SELECT count(*) FROM metrics").fetchone()[0] == 0


def _open_and_list(url: str) -> None:
    SQLStore(url).list_runs()


def test_processes_opening_a_new_database_at_once_all_succeed(tmp_path: Path) -> None:
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    for trial in range(3):
        url = f"sqlite:///{tmp_path / f'race{trial}.db'}"
        procs = [ctx.Process(target=_open_and_list, args=(url,)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert [p.exitcode for p in procs] == [0, 0, 0, 0]


def test_upgrade_keys_models_by_project(tmp_path: Path) -> None:
    """Versions and aliases made before models were keyed by project take their model's."""
    from insitu.store import AliasRecord, ModelRecord, ModelVersionRecord

    p = tmp_path / "old.db"
    _old_database(p, "0013",
                  "INSERT INTO models (name, created_at, description, tags, project)"
                  " VALUES ('fraud', 1.0, '', '{}', 'vision')",
                  "INSERT INTO model_versions (name, version, run_id, task_id, output,"
                  " created_at, description, tags, lineage, flavor) VALUES ('fraud', 1, 'r1',"
                  " 'fit', '{}', 1.0, '', '{}', '{}', 'sklearn')",
                  "INSERT INTO aliases (name, alias, version, updated_at) VALUES"
                  " ('fraud', 'champion', 1, 1.0)")
    s = SQLStore(f"sqlite:///{p}")
    assert [m.project for m in s.select(ModelRecord, name="fraud")] == ["vision"]
    assert [(v.project, v.flavor) for v in s.select(ModelVersionRecord)] == [
        ("vision", "sklearn")]
    assert [(a.project, a.alias) for a in s.select(AliasRecord)] == [("vision", "champion")]
    # the name is now free in another project
    s.put(ModelRecord(name="fraud", created_at=2.0, project="default"))
    assert sorted(m.project for m in s.select(ModelRecord, name="fraud")) == [
        "default", "vision"]
