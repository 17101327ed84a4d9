"""How a launcher stops at any instant: SIGINT and SIGTERM become one exception, `StopSignal`, raised
in the main thread wherever it is, so one `except` stops everything started so far.

`signals_held()` defers it across the few steps that must not be cut in half: a fork and the exec
that tags its child (node.launcher.cluster.spawn), the certificates a later start must be able to
read. Once a stop has begun, further signals are ignored: the clean-up must finish.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_held = 0  # nesting depth of signals_held() in the main thread
_stopping = False  # a stop signal came: later ones are ignored
_pending: int | None = None  # one that came inside signals_held(), raised when the block ends


class StopSignal(BaseException):
    """SIGINT or SIGTERM reached a launcher (a BaseException, like KeyboardInterrupt: no
    `except Exception` on the way up may swallow it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_status(self) -> int:
        """The shell's convention for a process ended by this signal: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + self.signum


def _on_stop_signal(signum: int, frame: object) -> None:
    global _stopping, _pending
    if _stopping:
        return  # already stopping: a second Ctrl-C or a supervisor's repeat must not cut the clean-up short
    _stopping = True
    if _held:
        _pending = signum
    else:
        raise StopSignal(signum)


def stop_on_signals() -> None:
    """From now on SIGINT and SIGTERM raise StopSignal in the main thread.

    SIGINT is handled even when it was inherited as ignored (a shell without job control starts
    background jobs so, and a supervisor or script started that way passes it on): the usual rule,
    keep an ignored SIGINT ignored, suits a process that can be left running, but this one owns a
    cluster nobody else stops. A supervisor configured to stop it with SIGINT, or a script's
    `kill -INT $!`, would otherwise be ignored until its SIGKILL, which leaves every node behind;
    the cost, a terminal's Ctrl-C also reaching a background `cluster up`, is a clean stop, not a leak.
    """
    global _stopping, _pending
    _stopping, _pending = False, None
    for signum in STOP_SIGNALS:
        signal.signal(signum, _on_stop_signal)


def begin_stop() -> None:
    """A clean-up begins (after a failure, say): from now on stop signals are ignored, so it runs whole."""
    global _stopping
    _stopping = True


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Run the block whole: a stop signal that arrives inside it is raised when it ends.

    Python runs signal handlers in the main thread only, and whichever thread the kernel picked,
    so this is a flag the handler reads rather than a signal mask; other threads need no holding.
    """
    global _held, _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _held += 1
    try:
        yield
    finally:
        _held -= 1
    if not _held and _pending is not None:
        signum, _pending = _pending, None
        raise StopSignal(signum)
