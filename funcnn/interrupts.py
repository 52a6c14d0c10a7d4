"""Ctrl-C, SIGTERM and SIGHUP as one exception, raised only at safe points.

A job scheduler sends SIGTERM before SIGKILL, a closed terminal SIGHUP, a
user Ctrl-C (SIGINT). Inside [`stop_signals`][funcnn.interrupts.stop_signals] each of them raises
[`Interrupted`][funcnn.interrupts.Interrupted] (a ``KeyboardInterrupt``), once: later signals are
recorded and dropped, so two Ctrl-C in a row cannot interrupt the clean-up of
the first. Inside [`deferred`][funcnn.interrupts.deferred] (a checkpoint being written) the signal is
held until the block ends, so the block either completes or never starts.
No JAX here.
"""

from __future__ import annotations

import contextlib
import gc
import signal
import threading
from collections.abc import Iterator
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""The signals that stop a run at a safe point."""


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived; ``signum`` says which, ``exit_status`` is ``128 + signum``
    (130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP), as a shell reports it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_status = 128 + signum


class _State:
    """What the handlers share: whether a signal arrived, and whether it must wait."""

    received: int | None = None
    raised = False
    deferring = 0


def _handle(signum: int, frame: FrameType | None) -> None:
    if _State.received is None:
        _State.received = signum
    if _State.deferring or _State.raised or _swallowed_at(frame):
        return
    _State.raised = True
    raise Interrupted(_State.received)


def _swallowed_at(frame: FrameType | None) -> bool:
    """Whether an exception raised at ``frame`` would be printed as "Exception ignored" and dropped:
    inside a ``__del__`` method or a garbage-collector callback (JAX registers one). The signal
    then stays received for [`raise_pending`][funcnn.interrupts.raise_pending] at the next safe point."""
    callbacks = {getattr(callback, "__code__", None) for callback in gc.callbacks}
    while frame is not None:
        if frame.f_code in callbacks or frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """Within the block, the first stop signal raises [`Interrupted`][funcnn.interrupts.Interrupted] (later
    ones are dropped); the previous handlers come back after it. A signal the process was started ignoring
    (``nohup`` ignores SIGHUP) stays ignored. Only in the main thread; elsewhere the block runs unchanged.

    Yields:
      ``None``; the block runs with the handlers installed.

    Raises:
      Interrupted: inside the block, at the first stop signal (where Python runs the handler,
        unless [`deferred`][funcnn.interrupts.deferred] holds it or it arrives in a ``__del__``
        method or a garbage-collector callback: then at the next
        [`raise_pending`][funcnn.interrupts.raise_pending]).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    ignored = {signum for signum in STOP_SIGNALS if signal.getsignal(signum) is signal.SIG_IGN}  # nohup
    previous = {signum: signal.signal(signum, _handle) for signum in STOP_SIGNALS if signum not in ignored}
    outer = _State.received, _State.raised, _State.deferring  # a block opened inside another's deferred
    _State.received, _State.raised, _State.deferring = None, False, 0
    try:
        yield
    finally:
        for signum, handler in previous.items():
            if signal.getsignal(signum) is _handle:  # not replaced within the block
                signal.signal(signum, handler)
        _State.received, _State.raised, _State.deferring = outer


def ignore_stop_signals() -> None:
    """From now on the stop signals change nothing: the command has ended, and only the process's
    exit remains (a signal there would otherwise kill it with the default action, after a run
    that completed). Within [`stop_signals`][funcnn.interrupts.stop_signals] the ignoring outlasts the block.
    Main thread only."""
    if threading.current_thread() is threading.main_thread():
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)


def raise_pending() -> None:
    """At a safe point: raise the stop signal received within [`stop_signals`][funcnn.interrupts.stop_signals]
    again.

    The handler's [`Interrupted`][funcnn.interrupts.Interrupted] would be lost where Python runs a signal
    handler inside a ``__del__`` method or a garbage-collector callback: an
    exception there is printed as "ignored" and dropped, and the run would go
    on to its end, exit 0. The handler does not raise there (it cannot see
    every weakref callback, which may still drop one). The training loop calls
    this after each chunk of steps, so such a signal stops the run there.
    Nothing happens when no signal was received, or when it is held by
    [`deferred`][funcnn.interrupts.deferred].

    Raises:
      Interrupted: when a stop signal was received within the current
        [`stop_signals`][funcnn.interrupts.stop_signals] block and no
        [`deferred`][funcnn.interrupts.deferred] block is open, even if the handler raised it
        already.
    """
    if _State.received is not None and not _State.deferring:
        _State.raised = True
        raise Interrupted(_State.received)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold a stop signal that arrives within the block until the block ends, then raise it.

    Outside [`stop_signals`][funcnn.interrupts.stop_signals] this changes nothing (a library caller's own
    handlers stay in charge).

    Yields:
      ``None``; a stop signal arriving inside the block is recorded, not raised.

    Raises:
      Interrupted: when the outermost ``deferred`` block ends normally and a stop signal that was
        not raised yet has arrived (within it, or held since before it). A block that ends with an
        exception lets that exception through instead; the signal stays pending for
        [`raise_pending`][funcnn.interrupts.raise_pending].
    """
    _State.deferring += 1
    try:
        yield
    finally:
        _State.deferring -= 1
    if not _State.deferring and _State.received is not None and not _State.raised:
        _State.raised = True
        raise Interrupted(_State.received)
