"""What the bucket tests look at behind ckptd's back: the keys and files in the bucket."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from tests.s3server import SeaweedServer

STATES = ("pending", "claimed", "done", "failed")


def prefix_of(url: str) -> str:
    """The key prefix of an ``s3://bucket/prefix`` root."""
    return url.split("://", 1)[1].split("/", 1)[1]


def where_jobs_are(server: SeaweedServer, url: str, queue: str) -> dict[str, list[str]]:
    """id -> the state folders that hold it (more than one after a crash, before recovery)."""
    prefix = f"{prefix_of(url)}/{queue}/"
    found: dict[str, list[str]] = defaultdict(list)
    for key in server.keys(prefix):
        folder, _, name = key[len(prefix):].partition("/")
        if folder in STATES and name.endswith(".json") and "/" not in name:
            found[name[:-5]].append(folder)
    return dict(found)


def read_jobs(server: SeaweedServer, url: str, queue: str, state: str, ids: list[str]
              ) -> dict[str, dict[str, Any]]:
    """Job files of one state, parsed, by id (one client for all: making one is slow)."""
    client = server.client()
    found = {}
    try:
        for job_id in ids:
            body = client.get_object(Bucket=server.bucket,
                                     Key=f"{prefix_of(url)}/{queue}/{state}/{job_id}.json")
            found[job_id] = dict(json.loads(body["Body"].read()))
        return found
    finally:
        client.close()


def read_job(server: SeaweedServer, url: str, queue: str, state: str, job_id: str
             ) -> dict[str, Any]:
    """A job file, parsed."""
    return read_jobs(server, url, queue, state, [job_id])[job_id]


def done_outcomes(job: dict[str, Any]) -> int:
    """How many attempts of a job ended "done" in its history."""
    return sum(1 for entry in job.get("history") or [] if entry.get("outcome") == "done")
