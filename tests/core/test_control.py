"""What the main loop is asked to do: signals recorded in order, nothing more."""

import signal

from alprd.control import Control


def test_signals_are_recorded_in_order_and_wake_the_loop():
    """The handlers are installed for the three signals, and the handler only
    records (called here as the interpreter calls it; the daemon tests send real
    signals to a real process)."""
    control = Control()
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        control.install()  # pytest runs tests in the main thread
        handlers = {signal.getsignal(s) for s in saved}
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    assert handlers == {control._on_signal}
    control._on_signal(signal.SIGHUP, None)
    assert control.wake.is_set() and not control.stop_requested
    assert not control.stop_pending
    control._on_signal(signal.SIGTERM, None)
    assert control.stop_requested and control.stop_pending
    assert control.next() == signal.SIGHUP
    assert control.next() == signal.SIGTERM
    assert control.next() is None and not control.stop_pending


def test_a_request_from_inside_the_process_is_the_same_as_a_signal():
    control = Control()
    control.ask(signal.SIGHUP)
    control.ask(signal.SIGINT)
    assert control.stop_requested and control.stop_pending
    assert [control.next(), control.next()] == [signal.SIGHUP, signal.SIGINT]
