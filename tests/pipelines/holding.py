"""Steps that hold their CPU until a file appears, so a test decides when each ends.

Each attempt appends a line to ``GATE.started`` when it starts."""

import pathlib
import time

import insitu


@insitu.step(cpu=1, memory="64MiB", retries=1, backoff=0.1)
def hold(gate: str) -> str:
    g = pathlib.Path(gate)
    with open(f"{gate}.started", "a") as f:
        f.write("started\n")
    while not g.exists():
        time.sleep(0.05)
    return g.name


@insitu.pipeline
def one(gate: str):
    hold(gate)


@insitu.pipeline
def firm(gate: str):
    hold.options(retries=0)(gate)


@insitu.pipeline
def two_cpu(gate: str):
    hold.options(cpu=2)(gate)


@insitu.pipeline
def many(gates: list):
    hold.map(gates)


@insitu.pipeline
def a100s(gates: list):
    hold.options(gpu=1, gpu_type="A100").map(gates)


@insitu.pipeline
def two_a100(gate: str):
    hold.options(gpu=2, gpu_type="A100")(gate)
