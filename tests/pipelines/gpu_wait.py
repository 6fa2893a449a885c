import time

import insitu


@insitu.step(gpu=1)
def first() -> int:
    time.sleep(20)
    return 1


@insitu.step(gpu=1)
def second() -> int:
    return 2


@insitu.step
def third(x: int) -> int:
    return x


@insitu.pipeline
def gpu_wait() -> None:
    first()
    third(second())
