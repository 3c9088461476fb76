"""Graceful stop on SIGINT/SIGTERM: the loop finishes its step, checkpoints and exits.

A second signal restores the default handler's behaviour (a second Ctrl-C aborts at once).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class StopRequest:
    """Set by a signal handler, polled by the training loop between steps."""

    def __init__(self) -> None:
        self.signal_number: int | None = None

    @property
    def requested(self) -> bool:
        return self.signal_number is not None


@contextmanager
def graceful_stop(
    signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM),
) -> Iterator[StopRequest]:
    """Install handlers for ``signals`` (main thread only) for the duration of the block."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {sig: signal.getsignal(sig) for sig in signals}

    def handle(signum: int, frame: object) -> None:
        if request.requested:  # second signal: behave as if we were not here
            signal.signal(signum, previous[signum])
            signal.raise_signal(signum)
            return
        request.signal_number = signum

    for sig in signals:
        signal.signal(sig, handle)
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
