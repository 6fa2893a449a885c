import os
import time
from pathlib import Path

import insitu


@insitu.step(cpu=1, memory="512MiB", retries=2, backoff=0.1)
def sleeper(i: int, folder: str) -> str:
    Path(folder, f"{i}.{os.environ['INSITU_ATTEMPT']}").write_text(os.environ["INSITU_NODE"])
    time.sleep(6)
    return os.environ["INSITU_NODE"]


@insitu.step
def first() -> int:
    return 1


@insitu.pipeline
def spread(folder: str) -> None:
    first()
    sleeper.map([0, 1, 2], folder=folder)
