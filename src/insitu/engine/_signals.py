"""Signals that stop a run: Ctrl-C (SIGINT) and SIGTERM only set a flag.

A Python signal handler runs between two bytecodes of the main thread; one that raises
(as the default SIGINT handler does) can interrupt a store write or the executor's
protocol halfway. Here the handler records the signal and the run loop, which polls the
flag at least once a second, cancels the run at a point of its own choosing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopFlag:
    """Set by a signal; read by the run loop."""

    def __init__(self) -> None:
        self.signals: list[int] = []

    def __call__(self) -> bool:
        return bool(self.signals)

    def handler(self, signum: int, frame: FrameType | None) -> None:
        self.signals.append(signum)  # nothing else: no I/O, no exception


@contextlib.contextmanager
def stop_signals() -> Iterator[Callable[[], bool]]:
    """While inside, SIGINT and SIGTERM set the flag this yields (on the main thread; in
    other threads no handler can be installed and the flag stays unset)."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous: dict[signal.Signals, Any] = {}
    for sig in STOP_SIGNALS:
        previous[sig] = signal.getsignal(sig)
        signal.signal(sig, flag.handler)
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)


__all__ = ["StopFlag", "stop_signals"]
