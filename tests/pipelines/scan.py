import insitu


@insitu.step(cpu=0.5, memory="256MiB")
def scan(shard: dict) -> int:  # type: ignore[type-arg]
    path = insitu.shard_path(shard)
    return sum(1 for _ in path.read_bytes().splitlines())


@insitu.step
def total(counts: list[int]) -> int:
    return sum(counts)


@insitu.pipeline
def scan_events(name: str = "events") -> None:
    total(scan.map(insitu.dataset("events").shards()))
