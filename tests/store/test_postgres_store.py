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
