"""The public surface of insitu.scheduler is exactly what is intended."""

import insitu.scheduler as s


def test_exported_names() -> None:
    assert sorted(s.__all__) == sorted([
        "POLICIES", "Bound", "ClusterState", "DataInput", "Decision", "Filter", "Gpu", "LinkPrices",
        "MigProfile", "Node", "OfflinePacking", "PackingResult", "Placement", "Policy", "Queue",
        "QueueScheduler", "Request", "ScorePlugin", "Taint", "Task", "TaskShape", "Toleration",
        "TraceError", "Workload", "get_policy", "load_nodes", "load_tasks", "offline_packing",
        "packing_bound", "run_packing"])
    for name in s.__all__:
        assert getattr(s, name) is not None
    assert s.__doc__ and "place(requests)" in s.__doc__


def test_modules_import_only_lower_layers() -> None:
    """No import circle among the package's modules, counting imports inside functions and
    under TYPE_CHECKING: each module depends only on modules below it."""
    import re
    from pathlib import Path

    import insitu.scheduler as pkg

    root = Path(pkg.__file__).parent
    deps = {p.stem: set(re.findall(r"from insitu\.scheduler(?:\.(_\w+) import| import (_\w+))",
                                   p.read_text()))
            for p in root.glob("_*.py") if p.stem != "__main__"}
    graph = {m: {a or b for a, b in found} - {m} for m, found in deps.items()}
    done: set[str] = set()

    def visit(m: str, path: tuple[str, ...]) -> None:
        assert m not in path, f"import circle: {' -> '.join((*path, m))}"
        if m in done:
            return
        for d in sorted(graph.get(m, ())):
            visit(d, (*path, m))
        done.add(m)

    for m in sorted(graph):
        visit(m, ())
    assert {"_explain", "_policies"}.isdisjoint(graph["_plugin"])
    assert "_state" not in graph["_explain"] | graph["_policies"] | graph["_published"]
