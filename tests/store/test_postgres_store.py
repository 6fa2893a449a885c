"""The store conformance suite against a real PostgreSQL server (see tests/pg_fixture.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from insitu.errors import StoreError
from insitu.store import SQLStore
from insitu.store._sql import HEAD
from insitu.testing.store_conformance import StoreConformance, make_run


class TestPostgresStore(StoreConformance):
    @pytest.fixture
    def store(self, postgres_url: str) -> Iterator[SQLStore]:
        s = SQLStore(postgres_url)
        yield s
        s.close()


def test_schema_is_at_head_and_data_survives_reopen(postgres_url: str) -> None:
    s = SQLStore(postgres_url)
    s.put(make_run("keep1"))
    s.close()
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        version = conn.execute(sa.text("SELECT version_num FROM insitu_alembic_version")).scalar()
    engine.dispose()
    assert version == HEAD
    assert SQLStore(postgres_url).get_run("keep1").id == "keep1"


def test_two_stores_migrating_at_once_both_succeed(postgres_url: str) -> None:
    errors: list[BaseException] = []
    stores: list[SQLStore] = []

    def open_one() -> None:
        try:
            stores.append(SQLStore(postgres_url))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert errors == []
    assert len(stores) == 4
    stores[0].put(make_run("shared"))
    assert all(s.get_run("shared").id == "shared" for s in stores)
    for s in stores:
        s.close()


def test_unreachable_server_is_one_clear_error_with_the_password_hidden() -> None:
    url = "postgresql+psycopg://insitu:s3cret-pw@127.0.0.1:1/insitu"
    with pytest.raises(StoreError) as e:
        SQLStore(url).list_runs()
    assert "s3cret-pw" not in e.value.message
    assert "127.0.0.1:1" in e.value.message


def _drop_connections(url: str) -> int:
    """Close, from the server's side, every connection to ``url``'s database (as a restart
    of PostgreSQL or an idle timeout would); the number closed."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()) AS t"))
                .scalar() or 0)
    finally:
        engine.dispose()


def test_connections_closed_by_the_database_are_replaced(postgres_url: str) -> None:
    import insitu.store._sql as sql

    s = SQLStore(postgres_url, pool_size=2)
    try:
        s.put(make_run("before"))
        assert s.get_run("before").id == "before"
        assert _drop_connections(postgres_url) >= 1
        # a read on a connection the database closed is tried again on a new one
        assert s.get_run("before").id == "before"
        assert _drop_connections(postgres_url) >= 1
        # a write checks a connection that sat idle before using it
        old, sql._IDLE_PING_S = sql._IDLE_PING_S, 0.0
        try:
            s.put(make_run("after"))
        finally:
            sql._IDLE_PING_S = old
        assert {r.id for r in s.list_runs()} == {"before", "after"}
    finally:
        s.close()
