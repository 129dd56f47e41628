"""A deliberately broken daemon for the negative control of the crash tests.

It answers "accepted" before it writes the job (and waits a little in between, so that a
kill lands in the gap), which is exactly what ckptd must never do. The crash test run
against it must find lost jobs; if it did not, the test could not catch a loss.
"""

from __future__ import annotations

import sys
import time

from ckptd.cli.main import main
from ckptd.daemon import daemon as daemon_module

_original_commit = daemon_module.Daemon.commit


def unsafe_commit(self: daemon_module.Daemon) -> None:
    txn = self.engine.txn
    if not txn.ops:
        _original_commit(self)
        return
    self.engine.txn = type(txn)()
    for callback in txn.callbacks:  # pretend every op is already on disk...
        if callback is not None:
            callback(None)
    _original_commit(self)  # ...send the acknowledgements and jobs...
    time.sleep(0.05)  # the window in which what was acknowledged is not on disk
    self.store.apply(txn.ops)  # ...and only then write


daemon_module.Daemon.commit = unsafe_commit  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.argv[0] = "ckptd"
    main()
