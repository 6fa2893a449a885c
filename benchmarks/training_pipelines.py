"""The distributed steps benchmarks/training.py measures, and the DDP loop it runs both
under insitu and under plain ``torchrun`` (``python benchmarks/training_pipelines.py``)."""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import torch
import torch.distributed as dist

import insitu
from insitu import train


def ddp_loop(steps: int, batch: int, warmup: int = 10) -> dict[str, float]:
    """Train a small MLP with DDP for ``steps`` steps; samples/s after ``warmup`` steps
    (the process group must be open)."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 10))
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.01)
    x, y = torch.randn(batch, 64), torch.randint(0, 10, (batch,))
    t0 = 0.0
    for i in range(steps + warmup):
        if i == warmup:
            dist.barrier()
            t0 = time.perf_counter()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(ddp(x), y).backward()
        opt.step()
    dist.barrier()
    took = time.perf_counter() - t0
    world = dist.get_world_size()
    return {"samples_per_s": steps * batch * world / took, "seconds": took}


@insitu.step(workers=2, cpu=0.5, memory="2GiB")
def throughput(steps: int, batch: int) -> dict[str, float]:
    return ddp_loop(steps, batch)


@insitu.pipeline
def throughput_job(steps: int = 300, batch: int = 64) -> None:
    throughput(steps, batch)


def _first_collective() -> float:
    t = torch.tensor([0.0])
    dist.all_reduce(t)
    now = torch.tensor([time.time()], dtype=torch.float64)
    dist.all_reduce(now, op=dist.ReduceOp.MAX)  # when the last rank was through
    return float(now.item())


@insitu.step(workers=2, cpu=0.25, memory="1GiB")
def first2() -> float:
    return _first_collective()


@insitu.step(workers=4, cpu=0.25, memory="1GiB")
def first4() -> float:
    return _first_collective()


@insitu.pipeline
def first_collective_2() -> None:
    first2()


@insitu.pipeline
def first_collective_4() -> None:
    first4()


@insitu.step(workers=2, cpu=0.5, memory="1GiB")
def killed(folder: str, steps: int = 30, every: int = 10, kill_at: int = 25) -> dict[str, int]:
    """Checkpoints every ``every`` steps; rank 1 is SIGKILLed at step ``kill_at`` of the
    first attempt. Writes when it was killed and when the restarted gang made its first
    step."""
    ctx = train.context()
    model = torch.nn.Linear(64, 10)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.01)
    ck = train.load_checkpoint({"model": model, "optim": opt})
    start = ck.step + 1 if ck else 0
    x = torch.randn(32, 64)
    for step in range(start, steps):
        opt.zero_grad()
        ddp(x).sum().backward()
        opt.step()
        if ck is not None and step == start and ctx.rank == 0:
            with open(os.path.join(folder, "resumed.json"), "w") as f:
                json.dump({"t": time.time(), "step": step}, f)
        if (step + 1) % every == 0:
            train.save_checkpoint({"model": model.state_dict(), "optim": opt.state_dict()},
                                  step=step)
        if step == kill_at and ctx.rank == 1 and os.environ["INSITU_ATTEMPT"] == "1":
            with open(os.path.join(folder, "killed.json"), "w") as f:
                json.dump({"t": time.time(), "step": step}, f)
            os.kill(os.getpid(), signal.SIGKILL)
    return {"start": start}


@insitu.pipeline
def restart_job(folder: str) -> None:
    killed(folder)


if __name__ == "__main__":  # under torchrun
    dist.init_process_group("gloo")
    out = ddp_loop(int(sys.argv[1]), int(sys.argv[2]))
    if dist.get_rank() == 0:
        print(json.dumps(out))
    dist.destroy_process_group()
