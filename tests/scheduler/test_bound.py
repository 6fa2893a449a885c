"""The packing upper bounds: valid (at least what any policy places, at most 100%) and tight where
a hand computation says so."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st_
from sched_helpers import gpu_node

from insitu.scheduler import POLICIES, ClusterState, Request, Workload, packing_bound
from insitu.scheduler._bound import config_bound, pooled_bound


def _share(nodes: list, reqs: list[Request], policy: str) -> float:
    st = ClusterState(nodes, policy=policy, seed=1, workload=Workload.from_requests(reqs))
    st.explain_pending = False
    for r in reqs:
        st.place_one(r)
    return st.allocated_gpu_milli() / st.gpu_capacity


def test_config_bound_is_below_100_and_equals_the_hand_computed_optimum() -> None:
    # two nodes of 8 cores and 2 GPUs; three tasks of 5 cores and 1 GPU: two never share a node
    # (10 > 8 cores), so at most 2 of the 4 GPUs are used. Pooled over the type, 16 cores hold
    # three tasks: the pooled bound says 75%.
    nodes = [gpu_node(f"n{k}", gpus=2, cpu=8, mem="32GiB") for k in range(2)]
    reqs = [Request(name=f"t{k}", cpu=5, memory="1GiB", gpu=1) for k in range(3)]
    assert pooled_bound(nodes, reqs).share == 0.75
    b = config_bound(nodes, reqs)
    assert b.optimal and abs(b.share - 0.5) < 1e-9
    assert abs(packing_bound(nodes, reqs).share - 0.5) < 1e-9
    assert max(_share(nodes, reqs, p) for p in POLICIES) == 0.5


def test_config_bound_counts_shared_tasks_over_half_a_gpu_one_per_gpu() -> None:
    # one node, one GPU, ample CPU: two tasks of 0.6 GPU cannot share it, nor can 0.4 + 0.7;
    # the best is 0.7 alone
    nodes = [gpu_node("n0", gpus=1, cpu=64)]
    reqs = [Request(name="a", cpu=1, gpu=0.6), Request(name="b", cpu=1, gpu=0.7),
            Request(name="c", cpu=1, gpu=0.6)]
    assert abs(config_bound(nodes, reqs).share - 0.7) < 1e-9


@settings(max_examples=25, deadline=None, database=None)
@given(st_.lists(st_.tuples(st_.integers(1, 4), st_.sampled_from([4, 8, 16])), min_size=1,
                 max_size=3),
       st_.lists(st_.tuples(st_.sampled_from([1, 2, 3, 6]),
                            st_.sampled_from([0.0, 0.25, 0.5, 0.6, 1.0, 2.0, 4.0])),
                 min_size=1, max_size=14))
def test_bound_is_at_least_every_policy_and_at_most_100(
        node_specs: list[tuple[int, int]], task_specs: list[tuple[int, float]]) -> None:
    nodes = [gpu_node(f"n{k}", gpus=g, cpu=c, mem="64GiB") for k, (g, c) in enumerate(node_specs)]
    reqs = [Request(name=f"t{k}", cpu=c, memory="1GiB", gpu=g)
            for k, (c, g) in enumerate(task_specs)]
    b = packing_bound(nodes, reqs, time_limit=5)
    assert 0.0 <= b.share <= 1.0 + 1e-9
    best = max(_share(nodes, reqs, p) for p in POLICIES)
    assert best <= b.share + 1e-9


def test_solver_output_on_stdout_is_hidden_and_stdout_restored() -> None:
    import subprocess
    import sys

    code = ("import os\n"
            "from insitu.scheduler._bound import _solver_quiet\n"
            "print('before', flush=True)\n"
            "with _solver_quiet():\n"
            "    os.write(1, b'solver noise\\n')\n"
            "print('after')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out == "before\nafter\n"


@settings(max_examples=25, deadline=None, database=None)
@given(st_.lists(st_.tuples(st_.integers(1, 4), st_.sampled_from([4, 8, 16])), min_size=1,
                 max_size=3),
       st_.lists(st_.tuples(st_.sampled_from([1, 2, 3, 6]),
                            st_.sampled_from([0.25, 0.5, 0.6, 1.0, 2.0, 4.0])),
                 min_size=1, max_size=10),
       st_.integers(0, 5))
def test_the_offline_packing_is_between_insitu_and_the_bound(
        node_specs: list[tuple[int, int]], task_specs: list[tuple[int, float]], seed: int) -> None:
    from insitu.scheduler._sim import gpu_capacity, offline_packing, packing_tasks, run_packing

    nodes = [gpu_node(f"n{k}", gpus=g, cpu=c, mem="64GiB") for k, (g, c) in enumerate(node_specs)]
    reqs = [Request(name=f"t{k}", cpu=c, memory="1GiB", gpu=g)
            for k, (c, g) in enumerate(task_specs)]
    found = offline_packing(nodes, reqs, seed=seed)
    bound = packing_bound(nodes, packing_tasks(reqs, gpu_capacity(nodes), seed), time_limit=5)
    online = run_packing(nodes, reqs, policy="insitu", seed=seed).share
    assert 0.0 <= online <= found.share <= bound.share + 1e-9


def test_the_offline_packing_places_large_tasks_first() -> None:
    """Arriving small first, a 1-GPU task splits the 2-GPU nodes; known in advance, the 2-GPU
    tasks go first and every GPU is used."""
    from insitu.scheduler._sim import offline_packing, run_packing

    nodes = [gpu_node(f"n{k}", gpus=2, cpu=8, mem="64GiB") for k in range(2)]
    reqs = [Request(name="one", cpu=1, memory="1GiB", gpu=1),
            Request(name="two", cpu=1, memory="1GiB", gpu=2)]
    found = offline_packing(nodes, reqs, seed=3)
    assert found.share == 1.0 and found.order == "GPU, largest first"
    online = min(run_packing(nodes, reqs, policy="least_allocated", seed=s).share
                 for s in range(6))
    assert online < 1.0
