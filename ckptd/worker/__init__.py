"""The worker SDK: :class:`Worker` runs a handler on the jobs a daemon sends; a handler
gets a :class:`Job` (payload, checkpoint, progress)."""

from ckptd.worker.worker import Job, Worker, load_handler

__all__ = ["Job", "Worker", "load_handler"]
