"""Steps with placement constraints (node selector, affinity, tolerations, priority, spot)."""

from __future__ import annotations

import os

import insitu

HOST = os.uname().nodename


@insitu.step(cpu=0.5, node_selector={"zone": "a"})
def in_zone_a() -> str:
    return "a"


@insitu.step(cpu=0.5)
def where() -> str:
    return os.uname().nodename


@insitu.pipeline
def nowhere() -> None:
    in_zone_a()


@insitu.pipeline
def here(host: str = HOST) -> None:
    where.options(node_selector={"insitu.dev/hostname": host}, priority=5, spot=False,
                  tolerations=["gpu=reserved:NoSchedule"],
                  affinity={"insitu.dev/hostname": [host, "other"]},
                  anti_affinity={"insitu.dev/hostname": "elsewhere"})()


@insitu.pipeline
def not_here(host: str = HOST) -> None:
    where.options(anti_affinity={"insitu.dev/hostname": [host]}, name="avoid")()


@insitu.pipeline
def malformed() -> None:
    where.options(node_selector=["zone=a"], tolerations=["gpu=x:Sometimes"], priority=True,
                  spot="yes", affinity={"zone": []})()
