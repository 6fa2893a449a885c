"""Records validate what they are given and say how to fix it."""

from __future__ import annotations

import pytest

from insitu.errors import ResourceError
from insitu.scheduler import ClusterState, Gpu, Node, Request, Taint, Toleration


def test_request_units_and_errors() -> None:
    r = Request(name="a", cpu="500m", memory="2GiB", gpu=0.25)  # type: ignore[arg-type]
    assert (r.cpu_milli, r.memory, r.gpu_count, r.gpu_milli) == (500, 2 * 1024**3, 1, 250)
    assert Request(name="b", gpu=4).total_gpu_milli == 4000
    with pytest.raises(ResourceError, match="more than one GPU must be a whole number"):
        Request(name="c", gpu=1.5)
    with pytest.raises(ResourceError, match="invalid memory of request 'd'"):
        Request(name="d", memory="lots")  # type: ignore[arg-type]
    with pytest.raises(ResourceError, match="unknown MIG profile '9g.1tb'"):
        Request(name="e", mig_profile="9g.1tb")
    with pytest.raises(ResourceError, match="both gpu=1.0 and a MIG profile"):
        Request(name="f", gpu=1, mig_profile="1g.10gb")


def test_taints_and_tolerations() -> None:
    t = Taint.parse("gpu=reserved:NoSchedule")
    assert str(t) == "gpu=reserved:NoSchedule"
    assert Toleration.parse("gpu=reserved:NoSchedule").tolerates(t)
    assert Toleration.parse("gpu").tolerates(t)
    assert Toleration.parse("*").tolerates(t)
    assert not Toleration.parse("gpu=other").tolerates(t)
    with pytest.raises(ResourceError, match="invalid taint"):
        Taint.parse("gpu=x:Sometimes")


def test_cluster_errors() -> None:
    with pytest.raises(ResourceError, match="at least one node"):
        ClusterState([])
    n = Node.build("a", cpu=1, memory="1GiB")
    with pytest.raises(ResourceError, match="two nodes are named 'a'"):
        ClusterState([n, n])
    with pytest.raises(ResourceError, match="has no MIG mode"):
        ClusterState([Node(name="b", cpu=1, memory=1, gpus=(Gpu(model="T4", mig=True),))])


def test_the_engine_example_from_the_docstring() -> None:
    cluster = ClusterState([Node.build("laptop", cpu=8, memory="32GiB", gpus=1,
                                       gpu_model="RTX4090")])
    d = cluster.place([Request(name="run1/train/1", cpu=2.0, memory=4 * 2**30, gpu=0.5)])[0]
    assert d.placement is not None
    assert (d.placement.node, d.placement.gpus, d.placement.gpu_milli) == ("laptop", (0,), 500)
    d2 = cluster.place([Request(name="run1/train/2", cpu=2.0, gpu=0.75)])[0]
    assert d2.reason == "0 of 1 node fits: 1 has no GPU with 0.75 of a GPU free"
    cluster.release(d.placement)
    assert cluster.place([Request(name="run1/train/2", cpu=2.0, gpu=0.75)])[0].placed
