"""``ckptd serve``: the loop, the engine and its index, flows, metrics, leadership, watching."""

from ckptd.daemon.daemon import Daemon

__all__ = ["Daemon"]
