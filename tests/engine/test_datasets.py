"""Datasets: shards with sizes, hashes and replicas; steps read them where they are."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import insitu
from insitu.errors import Conflict, NotFound, ValidationError

sys.path.insert(0, str(Path(__file__).parents[1] / "pipelines"))


def _write(folder: Path, n: int, lines: int = 100) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"part-{i}.txt"
        p.write_text("".join(f"event {i} {j}\n" for j in range(lines)))
        out.append(p)
    return out


def test_register_list_and_read_locally(home: Path, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    files = _write(tmp_path / "d", 3)
    ds = insitu.datasets.add("events", [str(tmp_path / "d" / "*.txt")])
    assert [s["shard"] for s in ds.shards()] == ["part-0.txt", "part-1.txt", "part-2.txt"]
    assert ds.size == sum(f.stat().st_size for f in files)
    assert ds.shards()[0]["replicas"] == [{"node": "local", "path": str(files[0])}]
    assert len(ds.shards()[0]["digest"]) == 64
    import scan

    run = insitu.run(scan.scan_events)
    assert run.output("total") == 300
    show = cli("show", run.id)
    assert "data: read" in show.stdout and "100.0% local, moved 0 B" in show.stdout
    ls = cli("datasets", "ls")
    assert "events" in ls.stdout and "local" in ls.stdout
    sh = json.loads(cli("datasets", "show", "events", "--json").stdout)
    assert [s["size"] for s in sh] == [f.stat().st_size for f in files]


def test_shards_on_another_node_are_moved_once_and_cached(home: Path, tmp_path: Path,
                                                          cli) -> None:  # type: ignore[no-untyped-def]
    _write(tmp_path / "far", 2)
    insitu.datasets.add("events", [str(tmp_path / "far" / "*.txt")], node="far-node")
    import scan

    run = insitu.run(scan.scan_events)
    assert run.output("total") == 200
    assert "0.0% local, moved" in cli("show", run.id).stdout
    again = insitu.run(scan.scan_events, no_cache=True)
    assert "100.0% local, moved 0 B" in cli("show", again.id).stdout, "the copy stays cached"


def test_a_vanished_replica_is_replaced_by_another(home: Path, tmp_path: Path) -> None:
    a = _write(tmp_path / "a", 1)
    _write(tmp_path / "b", 1)
    insitu.datasets.add("events", [str(a[0])])
    insitu.datasets.add("events", [str(tmp_path / "b" / "part-0.txt")], node="other")
    assert len(insitu.dataset("events").shards()[0]["replicas"]) == 2
    a[0].unlink()
    import scan

    assert insitu.run(scan.scan_events).output("total") == 100


def test_no_readable_replica_names_the_shard_and_its_locations(home: Path, tmp_path: Path,
                                                               cli) -> None:  # type: ignore[no-untyped-def]
    a = _write(tmp_path / "a", 1)
    insitu.datasets.add("events", [str(a[0])])
    a[0].unlink()
    import scan

    run = insitu.run(scan.scan_events, raise_on_failure=False)
    err = run.task("scan[0]").error or {}
    assert "shard events/part-0.txt cannot be read" in err["message"]
    assert f"local:{a[0]}" in err["message"]
    assert "events/part-0.txt" in cli("explain", run.id).stdout


def test_bad_input(home: Path, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    import scan

    with pytest.raises(ValidationError) as e:
        scan.scan_events.compile()
    assert "no dataset named 'events'" in str(e.value)
    a = _write(tmp_path / "a", 1)
    insitu.datasets.add("events", [str(a[0])])
    with pytest.raises(NotFound, match="did you mean 'events'"):
        insitu.dataset("event")
    b = tmp_path / "b"
    b.mkdir()
    (b / "part-0.txt").write_text("different\n")
    with pytest.raises(Conflict, match="already registered with other content"):
        insitu.datasets.add("events", [str(b / "part-0.txt")], node="n2")
    r = cli("datasets", "add", "x", str(tmp_path / "nothing*.txt"))
    assert r.returncode == 2 and "no file or folder matches" in r.stderr
    r = cli("datasets", "show", "nope")
    assert r.returncode == 2 and "no dataset named 'nope'" in r.stderr


def test_model_lineage_names_the_dataset_version(home: Path, tmp_path: Path) -> None:
    _write(tmp_path / "d", 2)
    insitu.datasets.add("events", [str(tmp_path / "d" / "*.txt")])
    import scan

    run = insitu.run(scan.scan_events)
    mv = insitu.models.register("counter", run=run.id, step="total")
    (ds,) = mv.lineage["datasets"]
    assert ds.startswith("events@") and len(ds) == len("events@") + 12
