"""Placement constraints on steps: validated at compile time, carried in the spec, honoured
by the scheduler through the engine's placement, explained when nothing fits."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

import insitu
from insitu.engine import resolve_resources
from insitu.engine._placement import Placement, Placer
from insitu.errors import ResourceError, ValidationError
from insitu.executor import NodeInfo
from insitu.spec import validate_spec

PIPELINES = Path(__file__).parents[1] / "pipelines"
sys.path.insert(0, str(PIPELINES))
import constrained  # noqa: E402

FILE = str(PIPELINES / "constrained.py")


def test_constraints_compile_into_the_spec() -> None:
    spec = validate_spec(constrained.here.compile(host="h1"))
    (s,) = spec["steps"]
    assert s["constraints"] == {
        "node_selector": {"insitu.dev/hostname": "h1"},
        "affinity": {"insitu.dev/hostname": ["h1", "other"]},
        "anti_affinity": {"insitu.dev/hostname": ["elsewhere"]},
        "tolerations": ["gpu=reserved:NoSchedule"], "priority": 5, "spot": False}
    req = resolve_resources(s, {})
    assert req.node_selector == (("insitu.dev/hostname", "h1"),) and req.priority == 5
    assert req.tolerations == ("gpu=reserved:NoSchedule",) and req.restartable is False
    plain = constrained.nowhere.compile()["steps"][0]
    assert plain["constraints"] == {"node_selector": {"zone": "a"}}


def test_malformed_constraints_are_problems_at_the_users_line() -> None:
    with pytest.raises(ValidationError) as e:
        constrained.malformed.compile()
    msgs = " | ".join(pr.message for pr in e.value.problems)
    assert "node_selector must map label names to values" in msgs
    assert "toleration 'gpu=x:Sometimes' is not KEY[=VALUE][:EFFECT]" in msgs
    assert "priority must be a whole number" in msgs
    assert "spot must be True" in msgs
    assert "affinity must map label names to a value or a list of values" in msgs
    assert {pr.file for pr in e.value.problems} == {FILE}
    assert len({pr.line for pr in e.value.problems}) == 1


def test_selector_no_node_matches_is_refused_with_the_reason(home: Path) -> None:
    with pytest.raises(ResourceError) as e:
        insitu.run(constrained.nowhere)
    msg = str(e.value)
    assert "step 'in_zone_a'" in msg and "constrained.py" in msg
    assert "has no label zone=a (the step's node_selector asks for it)" in msg
    assert insitu.list_runs() == []


def test_constraints_that_this_node_meets_run(home: Path) -> None:
    assert insitu.run(constrained.here).output("where") == constrained.HOST


def test_anti_affinity_excluding_every_node_is_refused(home: Path) -> None:
    with pytest.raises(ResourceError) as e:
        insitu.run(constrained.not_here)
    assert (f"a label the step's anti_affinity excludes (insitu.dev/hostname not in "
            f"({constrained.HOST}))") in str(e.value)


def _nodes() -> list[NodeInfo]:
    gib = 1024**3
    return [NodeInfo(name="n-a", cpu=4, memory=8 * gib, labels={"insitu.dev/zone": "a"}),
            NodeInfo(name="n-b", cpu=4, memory=8 * gib, labels={"insitu.dev/zone": "b"}),
            NodeInfo(name="n-spot", cpu=4, memory=8 * gib,
                     labels={"insitu.dev/zone": "b", "insitu.dev/spot": "true"})]


def _req(**constraints: object) -> object:
    step = {"id": "s", "resources": {"cpu": 1.0, "memory": 1024**3}, "retries": {"max": 0},
            "constraints": constraints}
    return resolve_resources(step, {})


def test_the_scheduler_honours_each_constraint() -> None:
    placer = Placer(_nodes())
    for _ in range(3):  # every placement lands in zone a
        got = placer.place(_req(node_selector={"zone": "a"}))  # type: ignore[arg-type]
        assert isinstance(got, Placement) and got.node == "n-a"
    got = placer.place(_req(affinity={"zone": ["b"]}, spot=True,  # type: ignore[arg-type]
                            anti_affinity={"insitu.dev/node": ["n-b"]}))
    assert isinstance(got, Placement) and got.node == "n-spot"
    got = placer.place(_req(anti_affinity={"zone": ["a"]}, spot=False))  # type: ignore[arg-type]
    assert isinstance(got, Placement) and got.node == "n-b"


def test_why_nothing_fits_names_the_constraint() -> None:
    placer = Placer(_nodes())
    why = placer.impossible(_req(node_selector={"zone": "c"}))  # type: ignore[arg-type]
    assert why is not None and "3 have no label zone=c" in why
    why = placer.impossible(_req(affinity={"zone": ["b"]}, spot=False,  # type: ignore[arg-type]
                                 anti_affinity={"insitu.dev/node": ["n-b"]}))
    assert why is not None and "set spot=True on the step" in why
    # busy, not impossible: the reason a waiting attempt keeps (shown by `insitu why`)
    assert isinstance(placer.place(_req(node_selector={"zone": "a"})), Placement)  # type: ignore[arg-type]
    step = {"id": "s", "resources": {"cpu": 4.0, "memory": 1024**3}, "retries": {"max": 0},
            "constraints": {"node_selector": {"zone": "a"}}}
    wait = placer.place(resolve_resources(step, {}))
    assert wait == ("0 of 3 nodes fit: 2 have no label zone=a (the step's node_selector asks "
                    "for it); 1 has less than 4 free CPUs")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TaintedNode(NodeInfo):
    """A node record that reports taints (as a cluster inventory with taints would)."""

    taints: tuple[str, ...] = ()


def test_tolerations_let_a_step_onto_a_tainted_node() -> None:
    gib = 1024**3
    placer = Placer([TaintedNode(name="gpu-box", cpu=8, memory=16 * gib,
                                 taints=("gpu=reserved:NoSchedule",))])
    why = placer.impossible(_req())  # type: ignore[arg-type]
    assert why is not None and ("1 has taint gpu=reserved:NoSchedule that the step does not "
                                'tolerate (add tolerations=["gpu=reserved:NoSchedule"])') in why
    for tol in ("gpu=reserved:NoSchedule", "gpu", "*"):
        got = placer.place(_req(tolerations=[tol]))  # type: ignore[arg-type]
        assert isinstance(got, Placement) and got.node == "gpu-box", tol
