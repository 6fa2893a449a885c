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
