"""Moving shards node to node: the per-node transfer service, over real HTTP on loopback."""

from __future__ import annotations

import json
import stat
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import insitu
from insitu.datasets._registry import hash_path
from insitu.datasets._signing import (
    SECRET_ENV,
    SECRET_FILE_ENV,
    TransferSecretMissing,
    load_secret,
    sign,
    write_secret_file,
)
from insitu.datasets._transfer import TransferError, TransferServer, fetch

sys.path.insert(0, str(Path(__file__).parents[1] / "pipelines"))


SECRET = "a-cluster-secret-for-these-tests-0123456789"


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    monkeypatch.setenv(SECRET_ENV, SECRET)   # the service and every fetch here share it
    root = tmp_path / "node-data"
    root.mkdir()
    srv = TransferServer("127.0.0.1", [str(root)])
    url = srv.start()
    try:
        yield url, root
    finally:
        srv.stop()


def test_a_file_and_a_folder_arrive_whole(served: tuple[str, Path], tmp_path: Path) -> None:
    url, root = served
    f = root / "part-0.bin"
    f.write_bytes(bytes(range(256)) * 40_000)  # 10 MB
    size, digest = hash_path(str(f))
    fetch(url, str(f), tmp_path / "got" / "part-0.bin", size=size, digest=digest)
    assert (tmp_path / "got" / "part-0.bin").read_bytes() == f.read_bytes()

    d = root / "part-1"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_text("a" * 1000)
    (d / "sub" / "b.txt").write_text("b" * 2000)
    size, digest = hash_path(str(d))
    fetch(url, str(d), tmp_path / "got" / "part-1", size=size, digest=digest)
    assert hash_path(str(tmp_path / "got" / "part-1")) == (size, digest)
    assert (tmp_path / "got" / "part-1" / "sub" / "b.txt").read_text() == "b" * 2000


def test_bytes_that_are_not_the_registered_ones_are_refused(served: tuple[str, Path],
                                                            tmp_path: Path) -> None:
    url, root = served
    f = root / "part-0.txt"
    f.write_text("changed since it was registered\n")
    size, _ = hash_path(str(f))
    with pytest.raises(TransferError, match=r"the registry says \d+ bytes, 000000000000"):
        fetch(url, str(f), tmp_path / "got" / "p", size=size, digest="0" * 64)
    assert not (tmp_path / "got" / "p").exists()
    assert not list((tmp_path / "got").iterdir()), "no partial file is left behind"


def test_only_the_nodes_data_is_served(served: tuple[str, Path], tmp_path: Path) -> None:
    url, root = served
    outside = tmp_path / "secret.txt"
    outside.write_text("not a shard")
    with pytest.raises(TransferError, match="answered 403"):
        fetch(url, str(outside), tmp_path / "got" / "s", size=11, digest="0" * 64)
    escape = root / ".." / "secret.txt"  # a path that climbs out of the root
    with pytest.raises(TransferError, match="answered 403"):
        fetch(url, str(escape), tmp_path / "got" / "s", size=11, digest="0" * 64)
    with pytest.raises(TransferError, match="answered 404"):
        fetch(url, str(root / "gone.txt"), tmp_path / "got" / "g", size=1, digest="0" * 64)


def test_an_unreachable_service_is_named(tmp_path: Path) -> None:
    with pytest.raises(TransferError, match=r"cannot reach the transfer service "
                                            r"http://127\.0\.0\.1:9"):
        fetch("http://127.0.0.1:9", "/x", tmp_path / "x", size=1, digest="0" * 64, timeout=5,
              secret=SECRET.encode())


def test_a_step_reads_another_nodes_replica_through_its_service(
        home: Path, served: tuple[str, Path], monkeypatch: pytest.MonkeyPatch,
        cli) -> None:  # type: ignore[no-untyped-def]
    from insitu.store import DataReadRecord, open_store

    url, root = served
    for i in range(2):
        (root / f"part-{i}.txt").write_text("".join(f"e{j}\n" for j in range(100)))
    insitu.datasets.add("events", [str(root / "part-*.txt")], node="far-node")
    # the executor tells each attempt where the other nodes' services are
    monkeypatch.setenv("INSITU_TRANSFER", json.dumps({"far-node": url}))
    import scan

    run = insitu.run(scan.scan_events)
    assert run.output("total") == 200
    reads = open_store().select(DataReadRecord, run_id=run.id)
    assert sorted((r.via, r.source, r.node, r.local) for r in reads) == \
        [("transfer", "far-node", "local", False)] * 2
    assert run.data_reads("scan") == run.data_reads() and len(reads) == 2
    show = cli("show", run.id).stdout
    assert "0.0% local" in show and "(from far-node" in show and "data read per step" in show

    again = insitu.run(scan.scan_events, no_cache=True)
    reads = open_store().select(DataReadRecord, run_id=again.id)
    assert {(r.via, r.local) for r in reads} == {("cache", True)}, "the copy stays cached"


def _get(url: str, query: dict[str, str] | list[tuple[str, str]]) -> tuple[int, bytes]:
    """One raw GET of the service (no client help): status and body."""
    try:
        with urllib.request.urlopen(f"{url}/shard?{urllib.parse.urlencode(query)}",
                                    timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_every_request_must_be_signed_by_the_clusters_secret(
        served: tuple[str, Path], tmp_path: Path) -> None:
    url, root = served
    f = root / "part-0.txt"
    f.write_text("the node's data\n")
    key = SECRET.encode()
    good = sign(key, str(f))
    assert _get(url, good) == (200, b"the node's data\n")

    status, body = _get(url, {"path": str(f)})
    assert status == 401 and b"signed" in body and b"node's data" not in body
    status, body = _get(url, {"path": str(f), "expires": good["expires"]})
    assert status == 401
    # a signature for another path, a changed expiry, a forged or foreign signature
    other = sign(key, str(root / "part-1.txt"))
    for query in ({**good, "sig": other["sig"]},
                  {**good, "expires": str(int(good["expires"]) + 60)},
                  {**good, "sig": "0" * 64}, {**good, "sig": ""},
                  sign(b"another-clusters-secret-0123456789", str(f))):
        status, body = _get(url, query)
        assert status == 403 and b"signature does not match" in body, query
        assert b"node's data" not in body
    # expired, and valid for longer than the service allows
    status, body = _get(url, sign(key, str(f), now=time.time() - 3600))
    assert status == 403 and b"expired" in body
    status, body = _get(url, sign(key, str(f), ttl=10 * 86400))
    assert status == 403 and b"too far ahead" in body
    # a parameter given twice is refused rather than guessed at
    status, _ = _get(url, [*good.items(), ("path", str(root / "x"))])
    assert status == 400
    # the client with the wrong secret is told so, and writes nothing
    size, digest = hash_path(str(f))
    with pytest.raises(TransferError, match="answered 403"):
        fetch(url, str(f), tmp_path / "got" / "p", size=size, digest=digest,
              secret=b"another-clusters-secret-0123456789")
    assert not (tmp_path / "got" / "p").exists()


def test_a_signed_path_that_climbs_out_of_the_roots_is_refused(
        served: tuple[str, Path], tmp_path: Path) -> None:
    url, root = served
    (tmp_path / "secret.txt").write_text("not a shard")
    (root / "link").symlink_to(tmp_path)
    key = SECRET.encode()
    for path in (str(root / ".." / "secret.txt"), str(root / "link" / "secret.txt"),
                 "/etc/passwd", str(root) + "/../node-data-2"):
        status, body = _get(url, sign(key, path))
        assert status == 403 and b"outside the folders" in body, path
        assert b"not a shard" not in body


def test_the_secret_comes_from_the_environment_or_a_file(tmp_path: Path) -> None:
    with pytest.raises(TransferSecretMissing, match="no transfer secret") as e:
        load_secret({})
    assert SECRET_ENV in (e.value.hint or "")
    with pytest.raises(TransferSecretMissing, match="too short"):
        load_secret({SECRET_ENV: "short"})
    key = write_secret_file(tmp_path / "transfer.key")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    first = load_secret({SECRET_FILE_ENV: str(key)})
    write_secret_file(key)  # made once: a second call keeps the cluster's secret
    assert load_secret({SECRET_FILE_ENV: str(key)}) == first and len(first) >= 32
    assert load_secret({SECRET_ENV: SECRET, SECRET_FILE_ENV: str(key)}) == SECRET.encode()
    with pytest.raises(TransferSecretMissing, match="cannot be read"):
        load_secret({SECRET_FILE_ENV: str(tmp_path / "missing.key")})


def test_a_service_without_a_secret_does_not_start(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    monkeypatch.delenv(SECRET_FILE_ENV, raising=False)
    with pytest.raises(TransferSecretMissing):
        TransferServer("127.0.0.1", [str(tmp_path)])
