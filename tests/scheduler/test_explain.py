"""The "why pending" text, word for word."""

from __future__ import annotations

from sched_helpers import gpu_node, tainted

from insitu.scheduler import ClusterState, Node, Request


def _issue_cluster() -> ClusterState:
    nodes = [gpu_node(f"a{i}", gpus=2, labels={"host": f"a{i}"}) for i in range(900)]
    nodes += [tainted(f"b{i}", gpus=4) for i in range(300)]
    nodes += [gpu_node(f"c{i}", gpus=4, model="V100") for i in range(13)]
    st = ClusterState(nodes)
    busy = [Request(name=f"x{i}", cpu=1, gpu=1, node_selector={"host": f"a{i}"})
            for i in range(900)]
    assert all(d.placed for d in st.place(busy))
    return st


def test_the_issue_example_word_for_word() -> None:
    st = _issue_cluster()
    d = st.place([Request(name="s", cpu=4, memory="8GiB", gpu=2, gpu_types=("T4",))])[0]
    assert not d.placed and not d.never
    assert d.reason == (
        "0 of 1,213 nodes fit: 900 have fewer than 2 free GPUs; 300 have taint "
        "gpu=reserved:NoSchedule that the step does not tolerate "
        '(add tolerations=["gpu=reserved:NoSchedule"]); 13 have V100, the step asks for T4')


def test_tolerating_the_taint_makes_it_fit() -> None:
    st = _issue_cluster()
    r = Request(name="s", cpu=4, gpu=2, gpu_types=("T4",),
                tolerations=("gpu=reserved:NoSchedule",))
    assert st.explain(r) == ""
    d = st.place([r])[0]
    assert d.placed and d.placement is not None and d.placement.node.startswith("b")


def test_can_never_be_placed() -> None:
    st = ClusterState([gpu_node("n0", gpus=8), gpu_node("n1", gpus=8)])
    d = st.place([Request(name="big", gpu=16)])[0]
    assert d.never
    assert d.reason == ("0 of 2 nodes fit: 2 have fewer than 16 GPUs in total; "
                        "it can never be placed on this cluster, even when empty")


def test_one_node_grammar_cpu_and_memory() -> None:
    st = ClusterState([Node.build("laptop", cpu=8, memory="16GiB")])
    assert st.place([Request(name="a", cpu=6)])[0].placed
    assert st.explain(Request(name="b", cpu=4)) == \
        "0 of 1 node fits: 1 has less than 4 free CPUs"
    assert st.explain(Request(name="c", cpu=1, memory="32GiB")) == (
        "0 of 1 node fits: 1 has less than 32.0 GiB of memory in total; "
        "it can never be placed on this cluster, even when empty")
    assert st.explain(Request(name="d", gpu=1)) == (
        "0 of 1 node fits: 1 has no GPUs; it can never be placed on this cluster, even when empty")


def test_shared_gpu_and_spot_and_selector() -> None:
    nodes = [gpu_node("g0", gpus=1), gpu_node("s0", spot=True), gpu_node("s1", spot=True),
             gpu_node("z0", labels={"zone": "b"})]
    st = ClusterState(nodes)
    assert st.place([Request(name="a", gpu=0.75, node_selector={"zone": "b"}),
                     Request(name="b", gpu=0.75, node_selector={"zone": "b"}),
                     Request(name="c", gpu=0.75, gpu_types=("T4",))])[2].placed
    assert st.explain(Request(name="x", gpu=0.5)) == (
        "0 of 4 nodes fit: 2 are spot nodes and the step is not restartable "
        "(set restartable=True to allow spot nodes); 2 have no GPU with 0.5 of a GPU free")
    assert st.explain(Request(name="y", gpu=0.25, node_selector={"zone": "a"})) == (
        "0 of 4 nodes fit: 4 have no label zone=a (the step's node_selector asks for it); "
        "it can never be placed on this cluster, even when empty")


def test_one_spot_node() -> None:
    st = ClusterState([gpu_node("s", spot=True)])
    assert st.explain(Request(name="r", cpu=1)) == (
        "0 of 1 node fits: 1 is a spot node and the step is not restartable "
        "(set restartable=True to allow spot nodes); it can never be placed on this cluster, "
        "even when empty")
