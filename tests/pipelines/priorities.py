import insitu


@insitu.step(cpu=1)
def first(x: int) -> int:
    return x


@insitu.step(cpu=1, priority=10)
def urgent(x: int) -> int:
    return x


@insitu.pipeline
def by_priority():
    first(1)          # first in the pipeline, but lower priority
    urgent(2)
