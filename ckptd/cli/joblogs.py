"""``ckptd logs QUEUE ID [-f]``: a job's own log, every attempt, and following a running one
(docs/guide/job-logs.md)."""

from __future__ import annotations

import time

import click

from ckptd.cli.context import current
from ckptd.cli.options import Command
from ckptd.core.errors import JobNotFound

FOLLOW_EVERY = 0.25  # seconds between two looks for new lines


@click.command(cls=Command, epilog="""Examples:
  ckptd logs price 20261127T192416.123456Z-9f3ac1d27b8e4a10
  ckptd logs price order-42 -f                  # until the job ends
  ckptd logs price order-42 --attempt 2

The files themselves: tail -f ./data/price/logs/order-42/1.log""")
@click.argument("queue")
@click.argument("job_id", metavar="ID")
@click.option("-f", "--follow", is_flag=True,
              help="Keep printing new lines until the job is done or failed.")
@click.option("--attempt", type=click.IntRange(min=1), metavar="N",
              help="Only this attempt's log. [default: every attempt]")
def logs(queue: str, job_id: str, follow: bool, attempt: int | None) -> None:
    """Print a job's own log: what its handler wrote with job.log() and logged while it ran,
    attempt by attempt."""
    admin = current().admin()
    since: dict[int, int] = {}
    last_attempt = None
    ended = False
    while True:
        answer = admin.job_logs(queue, job_id, since)
        for part in answer["parts"]:
            number = int(part["attempt"])
            if attempt is not None and number != attempt:
                continue
            if number != last_attempt:
                click.echo(f"--- attempt {number} ---")
                last_attempt = number
            click.echo(part["text"], nl=False)
            since[number] = int(part["end"])
        state = answer.get("state")
        if state is None and not answer["parts"] and not since:
            raise JobNotFound(f"no job {job_id!r} in queue {queue!r}")
        if not follow or ended:
            if ended:
                click.echo(f"--- the job is {state} ---", err=True)
            return
        # The last lines reach the store just after the job's move: one more look then.
        ended = state in ("done", "failed")
        time.sleep(FOLLOW_EVERY)


COMMANDS = (logs,)
