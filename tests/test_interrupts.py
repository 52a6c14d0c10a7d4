"""Stop signals: raised once at a safe point, held in a deferred block, ignored ones left alone."""

import gc
import os
import signal
import sys

import pytest

from funcnn import interrupts


def test_the_first_signal_raises_once_and_later_ones_are_dropped():
    with pytest.raises(interrupts.Interrupted) as caught, interrupts.stop_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):
            pass
    assert caught.value.signum == signal.SIGTERM and caught.value.exit_status == 143
    with interrupts.stop_signals():
        try:
            os.kill(os.getpid(), signal.SIGHUP)
            for _ in range(1000):
                pass
        except interrupts.Interrupted as first:
            assert first.exit_status == 129
            os.kill(os.getpid(), signal.SIGHUP)  # while the first is handled: dropped
            for _ in range(1000):
                pass


def test_a_deferred_block_completes_before_the_signal_is_raised():
    done = []
    with pytest.raises(interrupts.Interrupted, match="SIGINT"), interrupts.stop_signals():
        with interrupts.deferred():
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):
                pass
            done.append("written")
        done.append("never")
    assert done == ["written"]


def test_a_block_opened_inside_a_deferred_one_leaves_the_outer_block_as_it_was():
    done = []
    with pytest.raises(interrupts.Interrupted, match="SIGTERM"), interrupts.stop_signals():
        with interrupts.deferred():
            with interrupts.stop_signals():
                done.append("inner")
            os.kill(os.getpid(), signal.SIGTERM)  # still held by the outer deferred block
            for _ in range(1000):
                pass
            done.append("written")
        done.append("never")
    assert done == ["inner", "written"]
    assert interrupts._State.deferring == 0
    with pytest.raises(interrupts.Interrupted, match="SIGHUP"), interrupts.stop_signals():
        os.kill(os.getpid(), signal.SIGHUP)  # raised at once: nothing is left deferring
        for _ in range(1000):
            pass


def test_a_signal_the_process_ignores_stays_ignored():
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
    try:
        with interrupts.stop_signals():
            os.kill(os.getpid(), signal.SIGHUP)
            for _ in range(1000):
                pass
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_outside_stop_signals_a_deferred_block_changes_nothing():
    with interrupts.deferred():
        pass


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the lost raise, printed
class Sends:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here
        for _ in range(1000):
            pass


def _send_from_a_gc_callback(phase, info):
    if phase == "start":
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):
            pass


@pytest.mark.parametrize("where", ["__del__", "gc callback"])
def test_a_signal_inside_a_destructor_or_gc_callback_stops_at_the_next_safe_point(where, monkeypatch):
    """Python would drop an exception raised inside ``__del__`` or a garbage-collector callback,
    printing "Exception ignored in" with a traceback; the handler does not raise there, the signal
    stays received, and :func:`interrupts.raise_pending` raises it at the loop's next safe point."""
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    with interrupts.stop_signals():
        if where == "__del__":
            Sends()  # collected at once
        else:
            gc.callbacks.append(_send_from_a_gc_callback)  # the collector's own list, as JAX's
            try:
                gc.collect()
            finally:
                gc.callbacks.remove(_send_from_a_gc_callback)
        for _ in range(1000):
            pass
        with pytest.raises(interrupts.Interrupted, match="SIGTERM"):
            interrupts.raise_pending()
    assert unraisable == []
    interrupts.raise_pending()  # outside stop_signals: nothing received, nothing raised


def test_stop_signals_ignored_after_the_command_ends_stay_ignored_past_the_block():
    before = {signum: signal.getsignal(signum) for signum in interrupts.STOP_SIGNALS}
    try:
        with interrupts.stop_signals():
            interrupts.ignore_stop_signals()
        assert all(signal.getsignal(s) is signal.SIG_IGN for s in interrupts.STOP_SIGNALS)
        os.kill(os.getpid(), signal.SIGTERM)  # ignored: neither raised nor the default action
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
    with interrupts.stop_signals():  # a block that leaves the handlers alone restores them
        pass
    assert {signum: signal.getsignal(signum) for signum in interrupts.STOP_SIGNALS} == before
