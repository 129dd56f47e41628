"""The worker SDK: :class:`Worker` runs a handler on the jobs a daemon sends; a handler
gets a :class:`Job` (payload, checkpoint, progress)."""

from ckptd.worker.handlers import load_handler
from ckptd.worker.job import Job
from ckptd.worker.worker import Worker

__all__ = ["Job", "Worker", "load_handler"]
