"""The task of bench/peers.py, for ckptd and for Huey alike: one Redis INCR per job.

Both sides count their finished jobs in the same Redis (``$BENCH_REDIS_PORT`` on 127.0.0.1),
so each job does the same small piece of real I/O and the benchmark sees completion the
same way for both.
"""

from __future__ import annotations

import os
from typing import Any

import redis
from huey import RedisHuey

from ckptd import Job

PORT = int(os.environ.get("BENCH_REDIS_PORT", "6379"))
COUNTER = "bench:done"

_redis: redis.Redis | None = None


def _client() -> redis.Redis:
    global _redis
    if _redis is None:
        _redis = redis.Redis(host="127.0.0.1", port=PORT)
    return _redis


huey = RedisHuey("bench", host="127.0.0.1", port=PORT, results=False)


@huey.task()
def huey_job(payload: Any) -> None:
    """Huey's side: count the job."""
    _client().incr(COUNTER)


def ckptd_job(job: Job) -> None:
    """ckptd's side: count the job."""
    _client().incr(COUNTER)
