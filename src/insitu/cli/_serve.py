"""``insitu serve NAME@ALIAS``: serve a registered model over the Open Inference Protocol v2
on this machine, with no server. It always serves this machine's registry; when a server is
configured it says so, and names ``insitu endpoints create`` for the server's models."""

from __future__ import annotations

import click

from insitu.cli._common import console, err_console, esc
from insitu.errors import UserError


def _version(model: str, value: str, what: str) -> int:
    """``4`` or ``NAME:4`` (the served model's own name) as a version number."""
    name, _, num = value.rpartition(":")
    base = model.split("@", 1)[0].rsplit(":", 1)[0]
    if name and name != base:
        raise UserError(f"{what} {value!r} names model {name!r}; this endpoint serves {base!r}",
                        hint=f"give a version of {base}, e.g. {base}:2")
    try:
        v = int(num)
    except ValueError:
        raise UserError(f"{what} {value!r} is not a version", hint=f"e.g. {base}:2") from None
    if v < 1:
        raise UserError(f"{what} {value!r} is not a version (versions start at 1)")
    return v


@click.command()
@click.argument("model")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address to listen on; anything but loopback exposes the model to the "
                   "network without authentication")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option("--canary", default=None, metavar="NAME:VERSION",
              help="a second version that takes --percent of the traffic")
@click.option("--percent", type=click.FloatRange(0, 100), default=10.0, show_default=True,
              help="the canary's share of requests, in percent")
@click.option("--shadow", default=None, metavar="NAME:VERSION",
              help="a version that gets a copy of the traffic; its answers are logged "
                   "(as payloads), never returned")
@click.option("--shadow-percent", type=click.FloatRange(0, 100), default=100.0,
              show_default=True, help="the share of requests mirrored to --shadow")
@click.option("--ab-header", default=None, metavar="HEADER",
              help="a request header whose value chooses the version (with --route)")
@click.option("--route", "routes", multiple=True, metavar="VALUE=VERSION",
              help="with --ab-header: requests whose header is VALUE go to VERSION")
@click.option("--min", "min_replicas", type=click.IntRange(0, 64), default=1,
              show_default=True, help="replicas kept (0: scale to zero when idle)")
@click.option("--max", "max_replicas", type=click.IntRange(1, 64), default=1,
              show_default=True, help="replicas at most")
@click.option("--target-concurrency", type=click.FloatRange(0.1, 10_000), default=16.0,
              show_default=True, help="requests in flight per replica before another starts")
@click.option("--idle", "idle_seconds", type=click.FloatRange(0.1, 86_400), default=300.0,
              show_default=True, help="seconds without a request before scaling to zero "
                                      "(with --min 0)")
@click.option("--max-batch-size", type=click.IntRange(1, 65_535), default=32,
              show_default=True, help="requests stacked into one predict call at most")
@click.option("--max-latency-ms", type=click.FloatRange(0, 10_000), default=0.0,
              show_default=True, help="how long a batch may wait to fill (0: take what is "
                                      "queued, never wait)")
@click.option("--no-batching", is_flag=True, help="one request per predict call")
@click.option("--memory", default=None, metavar="SIZE",
              help="each replica's resident-memory limit, e.g. 1GiB")
@click.option("--payloads", "payload_sample", type=click.FloatRange(0, 1), default=0.0,
              show_default=True, help="the share of requests whose payloads are logged")
@click.option("--payload-max-bytes", type=click.IntRange(0, 2**31), default=65_536,
              show_default=True, help="request and response bodies are cut to this size "
                                      "in the payload log")
@click.option("--max-body-bytes", type=click.IntRange(1, 2**31), default=16 * 2**20,
              show_default=True, help="larger request bodies are refused (413)")
def serve(model: str, host: str, port: int, canary: str | None, percent: float,
          shadow: str | None, shadow_percent: float, ab_header: str | None,
          routes: tuple[str, ...], min_replicas: int, max_replicas: int,
          target_concurrency: float, idle_seconds: float, max_batch_size: int,
          max_latency_ms: float, no_batching: bool, memory: str | None,
          payload_sample: float, payload_max_bytes: int, max_body_bytes: int) -> None:
    """Serve MODEL (NAME@ALIAS, NAME:VERSION or NAME) over the Open Inference Protocol v2."""
    import ipaddress
    import socket

    from insitu._units import parse_memory
    from insitu.client import resolve
    from insitu.serving import (
        Autoscaling,
        Batching,
        Endpoint,
        EndpointSpec,
        PayloadLogging,
        Resources,
        Traffic,
    )
    from insitu.serving._serve import serve_forever

    creds = resolve()
    if creds is not None:  # logged in: this still serves this machine's registry
        err_console.print(
            f"[bold yellow]note:[/] a server is configured ({esc(creds.server)}), and "
            "`insitu serve` serves a model of this machine's registry (INSITU_HOME), not "
            f"the server's; to serve the server's model run: insitu endpoints create NAME "
            f"--model {esc(model)}", soft_wrap=True)
    route_map: dict[str, int] = {}
    for r in routes:
        value, sep, ver = r.partition("=")
        if not sep or not value:
            raise UserError(f"--route {r!r} is not VALUE=VERSION", hint="e.g. --route b=4")
        route_map[value] = _version(model, ver, "--route")
    if "@" not in model and ":" in model:
        _version(model, model, "MODEL")
    traffic = Traffic(canary=_version(model, canary, "--canary") if canary else None,
                      percent=percent if canary else 0.0,
                      shadow=_version(model, shadow, "--shadow") if shadow else None,
                      shadow_percent=shadow_percent, header=ab_header, routes=route_map)
    spec = EndpointSpec(
        model=model, traffic=traffic,
        autoscaling=Autoscaling(min_replicas=min_replicas,
                                max_replicas=max_replicas,
                                target_concurrency=target_concurrency,
                                idle_seconds=idle_seconds),
        batching=Batching(enabled=not no_batching, max_batch_size=max_batch_size,
                          max_latency_ms=max_latency_ms),
        resources=Resources(memory=parse_memory(memory, what="--memory") if memory else None),
        payloads=PayloadLogging(sample=payload_sample, max_bytes=payload_max_bytes),
        max_body_bytes=max_body_bytes)
    try:
        addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][4][0]
    except (socket.gaierror, UnicodeError) as e:
        raise UserError(f"cannot listen on --host {host!r}: {e}",
                        hint="give an address of this machine, e.g. 127.0.0.1") from None
    endpoint = Endpoint(spec)  # resolves every version and its runtime before listening
    if not ipaddress.ip_address(str(addr)).is_loopback:
        err_console.print(f"[bold yellow]warning:[/] listening on {esc(host)}: anyone who can "
                          "reach this machine can call the model (no authentication)")
    shown = f"[{addr}]" if ":" in str(addr) else str(addr)
    url = f"http://{shown}:{port}"
    name = endpoint.name
    ref = f"{endpoint.model}:{endpoint.stable}"
    console.print(f"serving [bold]{esc(ref)}[/] as {esc(name)} at {esc(url)} "
                  f"(OIP v2; metrics at {esc(url)}/metrics; replica logs in "
                  f"{esc(endpoint.logdir)})")
    console.print(f"try: curl -s {esc(url)}/v2/models/{esc(name)}")
    console.print(f"     curl -s -H 'content-type: application/json' {esc(url)}/v2/models/"
                  f"{esc(name)}/infer -d '{{\"inputs\": [{{\"name\": \"input-0\", "
                  f"\"shape\": [1, N], \"datatype\": \"FP64\", \"data\": [...]}}]}}'",
                  soft_wrap=True)
    serve_forever(endpoint, host=host, port=port)
