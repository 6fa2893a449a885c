"""Many stores racing to claim the same runs: each run's lease goes to exactly one of them
(SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from insitu.store import SQLStore
from insitu.testing.store_conformance import make_run


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_each_run_is_claimed_by_exactly_one_racer(kind: str, tmp_path: Path,
                                                  request: pytest.FixtureRequest) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}" if kind == "sqlite" else \
        request.getfixturevalue("postgres_url")
    first = SQLStore(url)
    ids = [f"race{i:04d}" for i in range(40)]
    first.put(*(make_run(i, supervised=True) for i in ids))
    won: dict[str, list[str]] = {i: [] for i in ids}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def racer(name: str) -> None:
        store = SQLStore(url)
        try:
            for i in ids:
                if store.claim_run(i, name, until=2e9, now=1e9):
                    with lock:
                        won[i].append(name)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            store.close()

    threads = [threading.Thread(target=racer, args=(f"r{n}",)) for n in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    first.close()
    assert errors == []
    assert {i: len(w) for i, w in won.items()} == {i: 1 for i in ids}
