"""Distributed steps for the training tests: a tiny linear model trained with DDP (gloo on
CPU), a single-process reference, and ranks that die, raise or run out of memory.

torch is imported at the top so that the fork server imports it once for every rank."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import torch
import torch.distributed as dist

import insitu
from insitu import train

EPOCHS = 4
ROWS = 16


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(ROWS, 4, generator=g)
    return x, x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1


def _fit(kill_at: int | None = None) -> dict[str, object]:
    ctx = train.context()
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05)
    ck = train.load_checkpoint({"model": model, "optim": opt})
    start = ck.step + 1 if ck else 0
    x, y = _data()
    per = ROWS // ctx.world_size
    mine = slice(ctx.rank * per, (ctx.rank + 1) * per)
    for epoch in range(start, EPOCHS):
        print(f"epoch {epoch} rank {ctx.rank}", flush=True)
        opt.zero_grad()
        loss = ((ddp(x[mine]) - y[mine]) ** 2).mean()
        loss.backward()
        opt.step()
        insitu.log_metric("loss", loss.item(), step=epoch)
        train.save_checkpoint({"model": model.state_dict(), "optim": opt.state_dict()},
                              step=epoch, keep=2)
        if epoch == kill_at and ctx.rank == 1 and os.environ["INSITU_ATTEMPT"] == "1":
            os.kill(os.getpid(), signal.SIGKILL)  # mid-training, after a checkpoint
    return {"weight": model.weight.detach().flatten().tolist(),
            "bias": model.bias.detach().tolist(), "start": start,
            "world": ctx.world_size, "backend": ctx.backend}


@insitu.step(workers=2, cpu=0.5, memory="1GiB", collective_timeout=60)
def ddp_fit() -> dict[str, object]:
    return _fit()


@insitu.step(workers=2, cpu=0.5, memory="1GiB", collective_timeout=60)
def killed_fit() -> dict[str, object]:
    return _fit(kill_at=1)


@insitu.step(cpu=0.5, memory="1GiB")
def single_fit() -> dict[str, object]:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = _data()
    for _ in range(EPOCHS):
        opt.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        opt.step()
    return {"weight": model.weight.detach().flatten().tolist(),
            "bias": model.bias.detach().tolist()}


@insitu.pipeline
def ddp_and_restart() -> None:
    ddp_fit()
    killed_fit()
    single_fit()


@insitu.step(workers=2, cpu=0.5, memory="1GiB", collective_timeout=60)
def raising() -> int:
    t = torch.ones(1)
    dist.all_reduce(t)
    if train.context().rank == 1:
        raise ValueError("bad batch on rank 1")
    dist.all_reduce(t)  # rank 0 waits here for rank 1, which never comes
    return int(t.item())


@insitu.step(workers=2, cpu=0.5, memory="300MiB", collective_timeout=60)
def greedy() -> int:
    t = torch.ones(1)
    dist.all_reduce(t)
    if train.context().rank == 1:
        block = bytearray(600 * 1024**2)
        for i in range(0, len(block), 4096):
            block[i] = 1
    dist.all_reduce(t)
    return int(t.item())


@insitu.pipeline
def failing() -> None:
    raising()
    greedy()


@insitu.step(workers=2, cpu=0.5, memory="1GiB", max_restarts=1, collective_timeout=60)
def always_killed() -> int:
    t = torch.ones(1)
    dist.all_reduce(t)
    if train.context().rank == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    dist.all_reduce(t)
    return 0


@insitu.pipeline
def exhausted() -> None:
    always_killed()


@insitu.step(cpu=3, memory="100MiB")
def hold(gate: str) -> int:
    """Holds 3 of the node's 4 CPUs until the file ``gate`` exists."""
    import time

    while not Path(gate).exists():
        time.sleep(0.05)
    return 1


@insitu.step(workers=2, cpu=1, memory="1GiB", collective_timeout=60)
def small_gang() -> int:
    t = torch.ones(1)
    dist.all_reduce(t)
    return int(t.item())


@insitu.pipeline
def gang_waits(gate: str) -> None:
    hold(gate)
    small_gang()


@insitu.step(workers=64, cpu=1, memory="100MiB")
def huge() -> int:
    return 0


@insitu.pipeline
def too_big() -> None:
    huge()


@insitu.step(workers=2, cpu=0.5, memory="1GiB", collective_timeout=60)
def objective(x: float) -> float:
    t = torch.tensor([x * (train.context().rank + 1)])
    dist.all_reduce(t)  # x + 2x
    value = (float(t.item()) - 1.5) ** 2
    insitu.log_metric("value", value)
    return value


@insitu.pipeline
def tuned() -> None:
    insitu.tune(objective, space={"x": insitu.tune.uniform(0.0, 1.0)}, metric="value",
                goal="minimize", max_trials=2, parallel=2, seed=0)


@insitu.step(workers=2, cpu=0.5, memory="1GiB", gpu=1, collective_timeout=60)
def on_gpus(x: float) -> float:
    ctx = train.context()  # declared GPUs on a CPU build of torch: gloo, on the CPU
    t = torch.tensor([float(os.environ["CUDA_VISIBLE_DEVICES"])])
    dist.all_reduce(t)
    insitu.log_metric("value", x)
    return float(t.item()) + (0.0 if ctx.backend == "gloo" else 100.0)


@insitu.pipeline
def competing() -> None:
    insitu.tune(on_gpus, space={"x": insitu.tune.uniform(0.0, 1.0)}, metric="value",
                goal="minimize", max_trials=3, parallel=3, seed=0)


@insitu.step(workers=2, cpu=0.5, memory="1GiB", collective_timeout=3, max_restarts=0)
def hangs() -> int:
    import threading

    t = torch.ones(1)
    dist.all_reduce(t)
    if train.context().rank == 1:
        threading.Event().wait()  # hung: never reaches the next collective
    dist.all_reduce(t)
    return 0


@insitu.pipeline
def hung() -> None:
    hangs()
