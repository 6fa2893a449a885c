from __future__ import annotations

from insitu.scheduler import Node, Taint

GiB = 1024**3


def gpu_node(name: str, gpus: int = 2, model: str = "T4", cpu: float = 32, mem: str = "128GiB",
             **kw: object) -> Node:
    return Node.build(name, cpu=cpu, memory=mem, gpus=gpus, gpu_model=model, **kw)


def tainted(name: str, text: str = "gpu=reserved:NoSchedule", **kw: object) -> Node:
    return gpu_node(name, taints=(Taint.parse(text),), **kw)
