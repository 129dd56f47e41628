"""ckptd: a checkpoint daemon for background work.

Jobs are files in a store (a local folder or a bucket); state changes are renames; a daemon
hands job ids to workers over ZeroMQ. See the README for the tour.
"""

from .errors import CkptdError

__version__ = "0.1.0"

__all__ = ["CkptdError", "__version__"]
