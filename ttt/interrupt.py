"""SIGTERM (a pre-empted job) and SIGINT (Ctrl-C) as an exception a run cannot lose.

Within `signals_raise()` a stop signal raises `Interrupted` wherever the main thread is. Python
swallows an exception raised inside a finalizer (a progress bar's `__del__`, a weakref callback):
it prints "Exception ignored in ..." and carries on. So the signal is also remembered, and
`check()`, called between tasks, raises it again; so does leaving the block.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)  # a pre-empted job; Ctrl-C
_received: list[int] = []  # stop signals received within signals_raise(), in order


class Interrupted(BaseException):
    """SIGTERM or SIGINT arrived (not an Exception: no per-task handler may swallow it, and not a
    KeyboardInterrupt, which Lightning turns into `sys.exit(1)` in the middle of a fit)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + signum  # what a shell reports for a job killed by it


def check() -> None:
    """Raise `Interrupted` if a stop signal arrived and its exception was swallowed on the way."""
    if _received:
        raise Interrupted(_received[0])


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT raise `Interrupted` (Lightning's own SIGTERM handler,
    installed during each fit, calls this one after flagging the trainer). A signal ignored when the
    run started stays ignored: a shell starts background jobs (`cmd &`, nohup) with SIGINT ignored."""

    def handler(signum, frame):
        _received.append(signum)
        raise Interrupted(signum)

    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    for signum, before in previous.items():
        if before is not signal.SIG_IGN:
            signal.signal(signum, handler)
    _received.clear()
    try:
        yield
        check()  # a signal whose exception a finalizer swallowed still stops the run
    finally:
        for signum, before in previous.items():
            signal.signal(signum, before)
        _received.clear()
