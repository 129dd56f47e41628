"""Testing your handlers and producers: a real daemon in your test's process, on a fake
clock.

    from ckptd.testing import InProcessDaemon

    def price(job):
        return {"sku": job.payload["sku"], "price": 9.5}

    def test_price():
        with InProcessDaemon() as ckpt:              # a temporary root, no port to pick
            ckpt.worker("prices", price)               # a real Worker, in a thread
            job_id = ckpt.client.submit("prices", {"sku": "A-1"})
            assert ckpt.wait_for("prices", job_id, "done")["result"]["price"] == 9.5

- :class:`InProcessDaemon`: ``ckptd serve`` in a thread, with its real loop, store, watcher
  and sockets (on 127.0.0.1, ports the system picks), so what a test sees is what
  production does; workers in threads; a client; ``wait_for(queue, id, state)``.
- :class:`FakeClock`: the daemon's "now". It stands still until
  :meth:`InProcessDaemon.advance` moves it: a delayed job, a retry's backoff, a lease of a
  vanished worker, a schedule's tick and retention all wait for it, and a test of "it runs
  in an hour" takes milliseconds (pg-boss's test clock and Huey's immediate mode are the
  models).

The guide: docs/guide/testing.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ckptd.testing.clock import FakeClock

if TYPE_CHECKING:
    from ckptd.testing.in_process import InProcessDaemon, WaitTimeout

__all__ = ["FakeClock", "InProcessDaemon", "WaitTimeout"]


def __getattr__(name: str) -> object:
    """``InProcessDaemon`` and ``WaitTimeout`` on first use: they import the daemon and
    ZeroMQ, which a test that only needs the clock does not."""
    if name in ("InProcessDaemon", "WaitTimeout"):
        from ckptd.testing import in_process

        return getattr(in_process, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
