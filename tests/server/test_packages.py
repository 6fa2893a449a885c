"""Code packages in the store: checked when kept, unpacked once per machine, whole or not
at all (a real SQLite store; zips built here)."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest
from remote import zip_of

from insitu.errors import TooLarge, UserError
from insitu.server import _packages
from insitu.store import PackageRecord, open_store


def test_a_package_is_kept_once_and_unpacked_into_its_digest_folder(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    data, digest = zip_of({"pipeline.py": b"x = 1\n", "lib/feats.py": b"y = 2\n"})
    view, new = _packages.put_package(store, "default", digest, data, limit=1 << 20)
    assert new and view["files"] == ["lib/feats.py", "pipeline.py"]
    assert _packages.put_package(store, "other", digest, data, limit=1 << 20)[1] is False
    cache = tmp_path / "cache"
    roots: list[Path] = []
    threads = [threading.Thread(target=lambda: roots.append(
        _packages.unpack(store, f"sha256:{digest}", cache))) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert {str(r) for r in roots} == {str(cache / digest)}
    assert (cache / digest / "lib" / "feats.py").read_text() == "y = 2\n"
    assert sorted(p.name for p in cache.iterdir()) == [digest]  # no half-made folder left
    store.close()


def test_limits_and_bad_members_are_refused(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    data, digest = zip_of({"a.py": b"z" * 5000})
    with pytest.raises(TooLarge) as e:
        _packages.put_package(store, "default", digest, data, limit=100)
    assert (e.value.size, e.value.limit) == (len(data), 100)
    bomb, bomb_digest = zip_of({"a.py": b"\0" * 100_000})  # stored: 100 kB in ~100 kB
    with pytest.raises(TooLarge, match="unpacks to"):
        _packages.member_paths(bomb, 10_000)
    with pytest.raises(UserError, match="backslash"):
        _packages.member_paths(zip_of({"a\\..\\b.py": b""})[0], 1 << 20)
    with pytest.raises(UserError, match="not a package digest"):
        _packages.parse_digest("sha256:XYZ")
    assert store.select(PackageRecord) == []
    store.close()


def test_a_damaged_stored_package_is_not_unpacked(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    data, digest = zip_of({"a.py": b"1"})
    _packages.put_package(store, "default", digest, data, limit=1 << 20)
    (rec,) = store.select(PackageRecord)
    store.put(dataclasses.replace(rec, data=data[:-3] + b"xyz"))
    with pytest.raises(UserError, match="damaged"):
        _packages.unpack(store, rec.digest, tmp_path / "cache")
    assert not (tmp_path / "cache" / digest).exists()
    store.close()
