"""What a cache key covers: code, cache_version and input content; not where a shard's
replicas live, and not a step's resources (memory, cpu, gpu, timeout, retries)."""

from __future__ import annotations

import sys
from pathlib import Path

import insitu
from insitu.store import open_store

sys.path.insert(0, str(Path(__file__).parents[1] / "pipelines"))


def _shards(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"part-{i}.txt").write_text("".join(f"event {i} {j}\n" for j in range(50)))


def test_moving_a_replica_keeps_every_cache_hit(home: Path, tmp_path: Path) -> None:
    _shards(tmp_path / "a", 3)
    insitu.datasets.add("events", [str(tmp_path / "a" / "*.txt")], node="local")
    import scan

    first = insitu.run(scan.scan_events)
    assert first.output("total") == 150
    # the replica of every shard moves: a copy on another node, then the first one is gone
    _shards(tmp_path / "b", 3)
    insitu.datasets.add("events", [str(tmp_path / "b" / "*.txt")], node="other")
    for f in (tmp_path / "a").iterdir():
        f.unlink()
    again = insitu.run(scan.scan_events)
    states = {t.id: t.state for t in again.tasks() if t.map_size is None}
    assert states == {"scan[0]": "cached", "scan[1]": "cached", "scan[2]": "cached",
                      "total": "cached"}, states
    assert again.output("total") == 150


_PIPE = '''
import insitu


@insitu.step({opts})
def work(x: int) -> int:
    return x * 2


@insitu.pipeline
def keyed(x: int = 3) -> None:
    work(x)
'''


def test_resources_are_not_in_the_key(home: Path, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "keyed.py"
    f.write_text(_PIPE.format(opts='memory="256MiB"'))
    r = cli("run", str(f), "--plain")
    assert r.returncode == 0, r.stdout + r.stderr
    store = open_store()
    key = store.list_tasks(store.list_runs()[0].id)[0].cache_key
    for opts in ('memory="512MiB"', 'memory="512MiB", cpu=0.5', 'timeout=30, retries=2',
                 'gpu=0'):
        f.write_text(_PIPE.format(opts=opts))
        r = cli("run", str(f), "--plain")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "1 cache hit" in r.stdout, (opts, r.stdout)
        latest = store.list_tasks(store.list_runs()[0].id)[0]
        assert latest.state == "cached" and latest.cache_key == key, opts
    f.write_text(_PIPE.format(opts='memory="512MiB"').replace("x * 2", "x * 3"))
    r = cli("run", str(f), "--plain")
    assert "cache hit" not in r.stdout, "changed code must miss"
