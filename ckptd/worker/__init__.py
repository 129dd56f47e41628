"""The worker SDK: :class:`Worker` runs a handler on the jobs a daemon sends; a handler
gets a :class:`Job` (payload, checkpoint, progress), an ``async def`` one an
:class:`AsyncJob`."""

from ckptd.worker.handlers import load_handler
from ckptd.worker.job import AsyncJob, Job
from ckptd.worker.worker import Worker

__all__ = ["AsyncJob", "Job", "Worker", "load_handler"]
