"""A signal during a run only sets a flag: no exception at an arbitrary point."""

from __future__ import annotations

import os
import signal

import pytest

from insitu.engine._signals import stop_signals


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_sets_the_flag_and_raises_nothing(sig: signal.Signals) -> None:
    before = signal.getsignal(sig)
    with stop_signals() as stop:
        assert not stop()
        os.kill(os.getpid(), sig)  # delivered to this (main) thread before kill returns
        total = sum(range(1000))   # code after the signal runs undisturbed
        assert stop() and total == 499500
    assert signal.getsignal(sig) is before
