"""Moving shards node to node: the per-node transfer service, over real HTTP on loopback."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import insitu
from insitu.datasets._registry import hash_path
from insitu.datasets._transfer import TransferError, TransferServer, fetch

sys.path.insert(0, str(Path(__file__).parents[1] / "pipelines"))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
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
        fetch("http://127.0.0.1:9", "/x", tmp_path / "x", size=1, digest="0" * 64, timeout=5)


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
