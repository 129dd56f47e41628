"""ckptd: a checkpoint daemon for background work.

Jobs are files in a store (a local folder or a bucket); state changes are renames; a daemon
hands job ids to workers over ZeroMQ. See the README for the tour.
"""

from .client import Client
from .errors import CkptdError, LeaseLost
from .outcomes import Fail, Retry
from .worker import Job, Worker

__version__ = "0.1.0"

__all__ = ["Client", "CkptdError", "Fail", "Job", "LeaseLost", "Retry", "Worker", "__version__"]
