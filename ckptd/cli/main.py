"""The ``ckptd`` command: a thin click layer over the Python API.

Each command parses its options into settings, calls :mod:`ckptd.store.admin` (a store, no
daemon) or :mod:`ckptd.client` (``--connect``, through a running daemon), and prints the
answer. The global options (:mod:`ckptd.cli.options`) come before or after the command's
name; errors become one red line on stderr and a named exit code (:mod:`ckptd.cli.exits`).
"""

from __future__ import annotations

import json
import os
import sys
from typing import BinaryIO

import click

from ckptd.cli import console, controls, encryption, exits, graphs, joblogs, sealing
from ckptd.cli.context import Context, current
from ckptd.cli.creation import check_new
from ckptd.cli.inputs import read_payload
from ckptd.cli.options import Group, connect_option
from ckptd.core.errors import ConfigError
from ckptd.core.states import STATES, State
from ckptd.core.timefmt import parse_duration
from ckptd.core.version import __version__

CREATE_HELP = ("Make the queue (or the store) even when its name is close to one that "
               "exists (a typo is refused otherwise).")


def _ctx() -> Context:
    return current()


def _print_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"],
                                          "max_content_width": 100},
             epilog="""Examples:
  ckptd serve --root ./data                               # the daemon
  ckptd submit price '{"sku": "A-1"}' --root ./data
  ckptd status --root ./data
  ckptd worker --connect 127.0.0.1:5550 --queue price tasks:price
  ckptd doctor --root ./data                              # when something does not work

The options above may come before or after the command. Every setting can also come from a
TOML file (--config) or CKPTD_<NAME> in the environment; a flag wins over the environment,
which wins over the file. Errors are one line on stderr with an exit code: 2 usage, 3 not
found, 4 exists, in use or not allowed, 5 invalid, 6 store, 7 daemon, 8 jobs failed,
9 problems.""")
@click.version_option(__version__, prog_name="ckptd")
@click.pass_context
def cli(ctx: click.Context, root: str | None, config_file: str | None, fsync: str | None,
        connect: str | None, log_level: str | None, server_key: str | None,
        client_key: str | None) -> None:
    """ckptd: jobs as files, state changes as renames, dispatch over ZeroMQ.

    Store commands (submit, status, ls, show, retry, cancel, purge, fsck, and the operator
    controls pause, resume, limit, schedules) work on the store directly, no daemon
    needed; with --connect they go through a running daemon.
    """
    ctx.obj = Context({"root": root, "fsync": fsync, "log_level": log_level,
                       "server_key": server_key, "client_key": client_key}, config_file,
                      connect)


@cli.command(epilog="""Examples:
  ckptd submit price '{"sku": "A-1", "qty": 3}'
  ckptd submit price --payload-file item.json --id order-42 --if-exists=return
  ckptd submit reports '{}' --delay 10m --max-attempts 5
  ckptd submit render '{"page": 7}' --time-limit 2m
  ckptd submit price '{"sku": "RUSH-1"}' --priority -10
  ckptd submit price '{"sku": "A-1"}' --key supplier-a
  ckptd submit price '{"total": true}' --after ID1 --after ID2 --on-parent-failure run""")
@click.argument("queue")
@click.argument("payload_json", required=False, metavar="[PAYLOAD_JSON]")
@click.option("--payload-file", metavar="F|-",
              help="Read the JSON payload from a file, or - for stdin.")
@click.option("--id", "job_id", metavar="ID", help="Your own id (an idempotency key).")
@click.option("--max-attempts", type=click.IntRange(min=1), help="Attempts before failed/.")
@click.option("--delay", metavar="DURATION", help="Do not run before this delay, e.g. 30s, 5m.")
@click.option("--time-limit", metavar="DURATION",
              help="How long one attempt may run (its handler then gets ckptd.TimeLimit); "
                   "over the queue's time_limit.")
@click.option("--priority", type=click.IntRange(-1_000_000, 1_000_000), metavar="N",
              help="Lower runs first, FIFO within one priority. [default: 0]")
@click.option("--key", metavar="KEY",
              help="Who or what the job is for (a supplier, a tenant): limits per key and "
                   "the fair share apply to it. [default: the queue's key path, or none]")
@click.option("--if-exists", type=click.Choice(["error", "return"]), default="error",
              show_default=True, help="When the id already exists: fail, or print it.")
@graphs.parent_options
@click.option("--create", is_flag=True, help=CREATE_HELP)
def submit(queue: str, payload_json: str | None, payload_file: str | None, job_id: str | None,
           max_attempts: int | None, delay: str | None, time_limit: str | None,
           priority: int | None, key: str | None, if_exists: str, after: tuple[str, ...],
           on_parent_failure: str | None, create: bool) -> None:
    """Create a job in QUEUE and print its id once it is stored.

    On a queue with unique = "payload" (or unique_fields) the id is made from the payload:
    the same payload prints the id of the job it made before (marked "already existed");
    with debounce, a pending job of the same fields takes the new payload instead. A new
    queue (or store) is said on stderr; one whose name is close to an existing one is
    refused unless --create is given.
    """
    payload = read_payload(payload_json, payload_file)
    seconds = parse_duration(delay, "--delay") if delay else None
    limit = parse_duration(time_limit, "--time-limit") if time_limit else None
    parents = graphs.parents(after, on_parent_failure)
    ctx = _ctx()
    creation = check_new(ctx, [queue], create=create)
    prep = sealing.preparer(ctx.settings()) if not ctx.connect else None
    if prep is not None and prep.active:  # the client's hooks, trace and keys (--root)
        payload, extra = prep.prepare(queue, payload, job_id)
        answer = ctx.store_admin().submit(
            queue, payload, job_id=job_id, max_attempts=max_attempts, delay=seconds,
            if_exists=if_exists, time_limit=limit, priority=priority, key=key,
            meta=extra.get("meta"), payload_key=extra.get("payload_key"), **parents)
    else:  # through the daemon, the client does it
        answer = ctx.admin().submit(queue, payload, job_id=job_id, max_attempts=max_attempts,
                                    delay=seconds, if_exists=if_exists, time_limit=limit,
                                    priority=priority, key=key, **parents)
    creation.say()
    click.echo(answer.id)
    if answer.debounced:
        click.echo("(debounced: it replaces the pending job of the same fields, and starts "
                   "later)", err=True)
    elif not answer.created:
        click.echo(f"(already existed, {answer.state})", err=True)


@cli.command("submit-file", epilog="""Examples:
  ckptd --root ./data submit-file price items.csv --chunk 100 --then pricelist
  ckptd --root s3://bucket/q submit-file parse logs.jsonl --batch logs-2026-11-27
  cat ids.txt | ckptd --root ./data submit-file lookup - --format lines
  ckptd --connect tcp://10.0.0.5:5550 submit-file price items.csv --then pricelist

The file is stored once (<queue>/blobs/<batch>.source); each job's payload names its byte
range. Running it again with the same --batch creates only the jobs that are missing.""")
@click.argument("queue")
@click.argument("file", type=click.File("rb"))
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl", "lines"]),
              help="Record format. [default: from the file name: .csv, .jsonl, else lines]")
@click.option("--chunk", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Records per job.")
@click.option("--batch", metavar="NAME", help="Batch name. [default: B<time>-<random>]")
@click.option("--then", "then", metavar="QUEUE",
              help="When every job has ended, submit one reduce job to this queue.")
@click.option("--max-attempts", type=click.IntRange(min=1), help="Attempts per job.")
@click.option("--key", metavar="KEY", help="The key of every job (e.g. the customer whose "
              "file it is): limits per key and the fair share apply to them.")
@click.option("--create", is_flag=True, help=CREATE_HELP)
def submit_file(queue: str, file: BinaryIO, fmt: str | None, chunk: int, batch: str | None,
                then: str | None, max_attempts: int | None, key: str | None,
                create: bool) -> None:
    """Split FILE into jobs of --chunk records each, as one batch; print the batch name.

    With --root the file goes straight into the store and the daemon picks the jobs up from
    there; with --connect it is sent to the daemon (in parts), which stores it the same way.
    """
    from ckptd.core.sources import guess_format

    name = getattr(file, "name", "-")
    ctx = _ctx()
    creation = check_new(ctx, [queue] + ([then] if then else []), create=create)
    data = file.read()
    admin = ctx.admin()
    label = "sending" if ctx.connect else "submitting"
    with click.progressbar(length=1, label=label, file=sys.stderr,
                           show_pos=True) as bar:
        def progress(done: int, total: int) -> None:
            bar.length = total
            bar.update(done - bar.pos)

        answer = admin.submit_file(queue, data, fmt=fmt or guess_format(name), chunk=chunk,
                                   batch=batch, then=then, max_attempts=max_attempts,
                                   source_name=os.path.basename(name), progress=progress,
                                   key=key)
    click.echo(answer.batch)
    click.echo(f"{answer.records} records in {answer.jobs} jobs ({answer.created} new, "
               f"format {answer.format})", err=True)
    creation.say()


@cli.command(epilog="""Examples:
  ckptd status
  ckptd status price --json
  ckptd status --connect 127.0.0.1:5550 --watch     # redraws every second; Ctrl-C stops""")
@click.argument("queue", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--watch", is_flag=True, help="Redraw every second until Ctrl-C.")
def status(queue: str | None, as_json: bool, watch: bool) -> None:
    """Counts of jobs per state, per queue; through a daemon also throughput over the last
    minute, lead and cycle time p50/p95, the oldest pending job's age and workers."""
    from ckptd.cli.statusview import show_status, store_problem

    admin = _ctx().admin()
    answer = show_status(lambda: admin.status(queue), as_json=as_json, watch=watch)
    problem = store_problem(answer) if answer is not None and not watch else None
    if problem is not None:
        raise problem  # the table says what works; the exit code, that the store does not


@cli.command(epilog="""Examples:
  ckptd ls price            # every job, with its state
  ckptd ls price failed     # the ids in failed/, one per line
  ckptd ls price pending    # in dispatch order: by priority, then oldest first""")
@click.argument("queue")
@click.argument("state", required=False, type=click.Choice([s.value for s in STATES]))
def ls(queue: str, state: str | None) -> None:
    """List the jobs of QUEUE (FIFO order; pending jobs in dispatch order: by priority,
    FIFO within one, then the delayed ones), in one STATE or all."""
    rows = _ctx().admin().ls(queue, State(state) if state else None)
    for row_state, job_id in rows:
        click.echo(job_id if state else f"{State(row_state).value:<8} {job_id}")


@cli.command(epilog="""Example:
  ckptd show price 20261127T192416.123456Z-9f3ac1d27b8e4a10""")
@click.argument("queue")
@click.argument("job_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--decrypt", is_flag=True, help="Open a sealed payload, result and checkpoint "
              "with the keys of the settings (encryption_key_file, CKPTD_ENCRYPTION_KEYS).")
def show(queue: str, job_id: str, as_json: bool, decrypt: bool) -> None:
    """Show a job: its state, its file, its checkpoint and its history."""
    ctx = _ctx()
    info = ctx.admin().show(queue, job_id)
    if decrypt:
        info["sealed"] = sealing.opened(info, sealing.keyring(ctx.settings()))
    if as_json:
        _print_json(info)
        return
    click.echo(f"state:      {info['state']}")
    click.echo(f"file:       {info['path']}")
    if info.get("also_in"):
        click.echo(f"also in:    {', '.join(info['also_in'])} (run ckptd fsck --repair)")
    for key, value in (info.get("lease") or {}).items():
        click.echo(f"lease.{key}: {value}")
    click.echo("job:")
    click.echo(json.dumps(info["job"], indent=2, default=str))
    if info.get("checkpoint") is not None:
        click.echo("checkpoint:")
        click.echo(json.dumps(info["checkpoint"], indent=2, default=str))
    for note in info.get("sealed") or ():
        click.echo(note)
    if info.get("log_tail"):
        click.echo(f"log (last lines; all: ckptd logs {queue} {job_id}):")
        for line in info["log_tail"]:
            click.echo(f"  {line}")


@cli.command(epilog="""Examples:
  ckptd explain price 20261127T192416.123456Z-9f3ac1d27b8e4a10
  ckptd --connect tcp://127.0.0.1:5550 explain price order-42   # adds the lease""")
@click.argument("queue")
@click.argument("job_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the sentences and facts as JSON.")
def explain(queue: str, job_id: str, as_json: bool) -> None:
    """Say why a job is where it is: state, attempts, lease, heartbeats, retry time, error."""
    import time

    from ckptd.core.explain import explain as explain_job

    ctx = _ctx()
    info = ctx.admin().show(queue, job_id)
    info["sealed"] = sealing.opened(info, sealing.keyring(ctx.settings()))
    sentences = explain_job(dict(info), time.time())
    if as_json:
        _print_json({"sentences": sentences, **info})
        return
    for line in sentences:
        click.echo(line)


@cli.command(epilog="""Examples:
  ckptd wait price 20261127T192416.123456Z-9f3ac1d27b8e4a10 order-42
  ckptd --connect tcp://127.0.0.1:5550 wait price --all --timeout 1h

Exit code 0 when every job is done, 8 when some failed or the wait timed out.""")
@click.argument("queue")
@click.argument("job_ids", nargs=-1, metavar="[ID]...")
@click.option("--all", "all_open", is_flag=True, help="Wait until QUEUE has no open job.")
@click.option("--timeout", metavar="DURATION", help="Give up after this long. [default: never]")
@click.option("--progress/--no-progress", default=None,
              help="Show a progress bar on stderr. [default: when stderr is a terminal]")
def wait(queue: str, job_ids: tuple[str, ...], all_open: bool, timeout: str | None,
         progress: bool | None) -> None:
    """Wait for jobs to end, with a progress bar (done/total, rate, ETA)."""
    from ckptd.cli.waiter import Progress, wait_jobs

    if bool(job_ids) == all_open:
        raise click.UsageError("give one or more IDs, or --all")
    seconds = parse_duration(timeout, "--timeout") if timeout else None
    outcome = wait_jobs(_ctx().admin(), queue, None if all_open else list(job_ids), seconds,
                        Progress(sys.stderr, progress))
    click.echo(outcome.summary())
    for failed_id in outcome.failed_ids[:20]:
        click.echo(f"failed: {failed_id}", err=True)
    sys.exit(outcome.exit_code)


@cli.command(epilog="""Examples:
  ckptd retry price 20261127T192416.123456Z-9f3ac1d27b8e4a10
  ckptd retry price --all --attempts 1""")
@click.argument("queue")
@click.argument("job_ids", nargs=-1, metavar="[ID]...")
@click.option("--all", "all_failed", is_flag=True, help="Retry every failed job of QUEUE.")
@click.option("--attempts", type=click.IntRange(min=1), help="Fresh attempts to give each job.")
def retry(queue: str, job_ids: tuple[str, ...], all_failed: bool, attempts: int | None) -> None:
    """Move failed jobs back to pending, with a fresh budget of attempts."""
    if bool(job_ids) == all_failed:
        raise click.UsageError("give one or more IDs, or --all")
    moved = _ctx().admin().retry(queue, None if all_failed else list(job_ids), attempts=attempts)
    click.echo(f"{len(moved)} job(s) moved back to pending")


@cli.command(epilog="""Example:
  ckptd cancel price 20261127T192416.123456Z-9f3ac1d27b8e4a10""")
@click.argument("queue")
@click.argument("job_id", metavar="ID")
def cancel(queue: str, job_id: str) -> None:
    """Cancel a job: a pending (or waiting) job is removed, a claimed one is moved to failed.

    The worker running a claimed job is told at once: its handler gets ckptd.Cancelled,
    and is stopped by force after the worker's grace period. With --root the daemon that
    runs the store is asked to do it (its address is in the root's lock); only when none
    answers is the store changed directly.
    """
    from ckptd.cli.through_daemon import cancel_through_daemon
    from ckptd.core.edits import who_am_i

    ctx = _ctx()
    asked = None if ctx.connect else cancel_through_daemon(ctx, queue, job_id,
                                                           who_am_i("--root"))
    was = asked[0] if asked else ctx.admin().cancel(queue, job_id)
    click.echo("moved to failed (cancelled)" if was == State.CLAIMED.value else "removed")
    if asked is not None:
        click.echo(f"note: done through the daemon at {asked[1]}, which runs this store "
                   "(a running job's worker is told at once)", err=True)
    elif was == State.CLAIMED.value and not ctx.connect:
        click.echo("note: its worker was not told (no daemon answered for this store); "
                   "the daemon drops its answer when it comes", err=True)


@cli.command(epilog="""Examples:
  ckptd purge price done --older-than 7d
  ckptd purge price failed""")
@click.argument("queue")
@click.argument("state", type=click.Choice([State.DONE.value, State.FAILED.value]))
@click.option("--older-than", metavar="DURATION", help="Only jobs finished longer ago, e.g. 7d.")
def purge(queue: str, state: str, older_than: str | None) -> None:
    """Delete finished jobs (with their checkpoints and blobs)."""
    seconds = parse_duration(older_than, "--older-than") if older_than else None
    count = _ctx().admin().purge(queue, State(state), seconds)
    click.echo(f"{count} job(s) purged")


@cli.command(epilog="""Examples:
  ckptd fsck             # report only
  ckptd fsck --repair    # fix what can be fixed""")
@click.option("--repair", is_flag=True, help="Fix what was found, not just report it.")
def fsck(repair: bool) -> None:
    """Check the store: jobs in two states, bad files, leftovers, orphans.

    Exit code 0 when nothing is left to fix, 9 otherwise. Run it on a store that no daemon
    is using, or let the daemon's own recovery do it at start.
    """
    ctx = _ctx()
    if ctx.connect:
        raise ConfigError("fsck works on the store itself: use --root, not --connect")
    findings = ctx.store_admin().fsck(repair=repair)
    for finding in findings:
        click.echo(finding.line())
    unresolved = [f for f in findings if not f.repaired]
    click.echo(f"{len(findings)} finding(s), {len(unresolved)} left to fix")
    if unresolved:
        sys.exit(exits.PROBLEMS)


@cli.command(epilog="""Examples:
  ckptd serve --root /var/lib/ckptd
  ckptd serve --config /etc/ckptd/ckptd.toml
  ckptd serve --root ./data --control tcp://127.0.0.1:5550 --dispatch tcp://127.0.0.1:5551
  CKPTD_LEASE=2s ckptd serve --root ./data     # the heartbeat follows: a third of the lease""")
@click.option("--control", metavar="ENDPOINT",
              help="Control socket to bind. [default: tcp://127.0.0.1:5550]")
@click.option("--dispatch", metavar="ENDPOINT",
              help="Socket workers connect to for jobs. [default: tcp://127.0.0.1:5551]")
@click.option("--lease", metavar="DURATION", help="Lease of a claimed job. [default: 60s]")
@click.option("--heartbeat", metavar="DURATION",
              help="How often workers send heartbeats. [default: a third of the shortest "
                   "lease, at most 5s]")
@click.option("--insecure", is_flag=True, default=None,
              help="Allow a non-loopback bind without CURVE (logged as a warning).")
@click.option("--log-format", type=click.Choice(["auto", "text", "json"]),
              help="Log lines as text or JSON. [default: auto]")
@click.option("--metrics-port", type=click.IntRange(0, 65535), metavar="PORT",
              help="Serve Prometheus /metrics and the dashboard on this HTTP port "
                   "(on metrics_bind, 127.0.0.1 by default). [default: 0 = off]")
@click.option("--ready-file", metavar="FILE", type=click.Path(dir_okay=False),
              help="Write the bound endpoints and pid as JSON here once serving.")
def serve(control: str | None, dispatch: str | None, lease: str | None, heartbeat: str | None,
          insecure: bool | None, log_format: str | None, metrics_port: int | None,
          ready_file: str | None) -> None:
    """Run the daemon: dispatch the store's jobs to workers over ZeroMQ.

    Recovers the index from the store, watches pending/ folders, hands jobs to workers
    that have free slots, and turns their answers into renames. SIGTERM drains (a second
    SIGTERM stops at once), SIGHUP reloads the settings that can change.
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # numpy here never calls BLAS
    from ckptd.core import logs
    from ckptd.daemon.daemon import Daemon

    ctx = _ctx()
    flags = {"control": control, "dispatch": dispatch, "lease": lease, "heartbeat": heartbeat,
             "insecure": insecure, "log_format": log_format, "metrics_port": metrics_port}
    settings = ctx.settings(**flags)
    logs.configure(settings.log_level, settings.log_format)
    daemon = Daemon(settings, ready_file=ready_file)
    daemon.config_file = ctx.config_file
    daemon.config_flags = {**ctx.flags, **{k: v for k, v in flags.items() if v is not None}}
    sys.exit(daemon.run())


@cli.command(epilog="""Examples:
  ckptd worker --connect tcp://10.0.0.5:5550 --queue price -c 8 tasks:price
  ckptd worker --connect 10.0.0.5:5550 --queue render -P process -c 4 tasks:price
  ckptd worker --connect 10.0.0.5:5550 --queue fetch -c 200 tasks:fetch
  ckptd worker --connect 10.0.0.5:5550 --queue price --queue ship --time-limit 10m tasks:price

In 8 threads (I/O-bound work); in 4 child processes (CPU-bound work); an 'async def'
function, 200 jobs in flight on one event loop (its pool is chosen by itself); with
ckptd.TimeLimit after 10 minutes. MODULE is imported with the current folder on the path;
FUNCTION receives a ckptd.Job (an 'async def' one a ckptd.AsyncJob).""")
@click.option("--connect", "connect", metavar="ENDPOINT[,ENDPOINT]", callback=connect_option,
              help="Control address(es) of the daemon (tcp:// is implied). "
                   "[env: CKPTD_CONNECT]")
@click.option("--queue", "queues", multiple=True, required=True, metavar="QUEUE",
              help="Queue to take jobs from (repeat for several).")
@click.option("-P", "--pool", type=click.Choice(["thread", "process", "async"]),
              envvar="CKPTD_POOL",
              help="Where handlers run: threads, child processes (CPU-bound work), or an "
                   "event loop (async def). [env: CKPTD_POOL; default: async for an async "
                   "def handler, else thread]")
@click.option("-c", "--concurrency", type=click.IntRange(min=1), default=1, show_default=True,
              help="Jobs run at once: threads, child processes, or async jobs in flight.")
@click.option("--prefetch", type=click.IntRange(min=0), default=0, show_default=True,
              help="Extra jobs to hold beyond the running ones, always. With 0 the daemon "
                   "still sends extra jobs while handlers take under 5 ms (enough to hide "
                   "the round trip) and none once they take longer, so a waiting job never "
                   "sits behind a busy worker.")
@click.option("--time-limit", metavar="DURATION",
              help="How long an attempt may run when neither the job nor its queue says "
                   "(then ckptd.TimeLimit). [env: CKPTD_TIME_LIMIT; default: none]")
@click.option("--grace-period", metavar="DURATION", envvar="CKPTD_GRACE_PERIOD",
              help="Between asking a job to stop (time limit, cancel) and stopping it by "
                   "force. [env: CKPTD_GRACE_PERIOD; default: 5s]")
@click.option("--max-jobs-per-child", type=click.IntRange(min=0), default=0,
              envvar="CKPTD_MAX_JOBS_PER_CHILD",
              help="--pool process: replace a child after this many jobs. [default: 0 = never]")
@click.option("--max-memory-per-child", metavar="SIZE", envvar="CKPTD_MAX_MEMORY_PER_CHILD",
              help="--pool process: replace a child whose resident memory grew over this, "
                   "after its job: 512MiB, 2GiB (a plain number is KiB). [default: none]")
@click.option("--name", metavar="NAME", help="Worker name in logs. [default: host-pid-random]")
@click.option("--server-key", metavar="FILE",
              help="CURVE: the daemon's public key file. [env: CKPTD_SERVER_KEY]")
@click.option("--client-key", metavar="FILE",
              help="CURVE: this machine's secret key file. [env: CKPTD_CLIENT_KEY]")
@click.option("--log-format", type=click.Choice(["auto", "text", "json"]),
              help="Log lines as text or JSON. [env: CKPTD_LOG_FORMAT; default: auto]")
@click.argument("handler", metavar="MODULE:FUNCTION")
def worker(connect: str | None, queues: tuple[str, ...], pool: str | None, concurrency: int,
           prefetch: int, time_limit: str | None, grace_period: str | None,
           max_jobs_per_child: int, max_memory_per_child: str | None, name: str | None,
           server_key: str | None, client_key: str | None, log_format: str | None,
           handler: str) -> None:
    """Run a worker: take jobs of QUEUE from a daemon and run FUNCTION on each.

    The function's return value becomes the job's result; an exception fails the attempt
    (retried with backoff); raise ckptd.Retry or ckptd.Fail to decide yourself. SIGTERM or
    Ctrl-C lets running jobs finish, then exits; a second one gives them back to the daemon
    (they run again at once) and exits now.
    """
    from ckptd.core import logs
    from ckptd.core.timefmt import parse_size
    from ckptd.wire.security import client_curve
    from ckptd.worker import Worker, load_handler

    ctx = _ctx()
    settings = ctx.settings(server_key=server_key, client_key=client_key, log_format=log_format,
                            time_limit=time_limit)
    logs.configure(settings.log_level, settings.log_format)
    curve = client_curve(settings)
    address = connect or ctx.connect
    if not address:
        raise ConfigError("give the daemon's address: --connect tcp://HOST:5550 "
                          "(or CKPTD_CONNECT)")
    grace = parse_duration(grace_period, "--grace-period") if grace_period else None
    memory = 0 if not max_memory_per_child else int(max_memory_per_child) * 1024 \
        if max_memory_per_child.isdigit() else parse_size(max_memory_per_child, "--max-memory")
    func = load_handler(handler)
    root = ctx.flags.get("root")
    runner = Worker(address.split(","), list(queues), func, concurrency=concurrency,
                    prefetch=prefetch, name=name, root=root, curve=curve, settings=settings,
                    pool=pool, time_limit=settings.time_limit or None, grace=grace,
                    max_jobs_per_child=max_jobs_per_child, max_memory_per_child=memory)
    runner.run()
    if runner.interrupted:  # it said so in the log
        sys.exit(130)
    if runner.restart_needed:
        runner.restart_process()


@cli.command(epilog="""Examples:
  ckptd keygen /etc/ckptd/keys --name server     # on the daemon's machine
  ckptd keygen /etc/ckptd/keys --name vm2        # on each worker machine

Copy each worker's NAME.key (public) into the daemon's authorized_keys folder and the
daemon's server.key to every worker; a NAME.key_secret never leaves its machine.
See docs/guide/security.md.""")
@click.argument("folder", metavar="DIR", type=click.Path(file_okay=False))
@click.option("--name", metavar="NAME", help="File name of the pair. [default: this host's name]")
def keygen(folder: str, name: str | None) -> None:
    """Write a CURVE key pair: DIR/NAME.key (public) and DIR/NAME.key_secret (mode 0600)."""
    import socket

    from ckptd.wire.security import keygen as write_key_pair
    from ckptd.wire.security import load_public_key

    name = name or socket.gethostname().split(".")[0]
    public, secret = write_key_pair(folder, name)
    click.echo(f"public key: {public}  ({load_public_key(public).decode()})")
    click.echo(f"secret key: {secret}  (mode 0600; never copy it to another machine)")


@cli.command(epilog="""Examples:
  ckptd doctor --root ./data
  ckptd doctor --connect 127.0.0.1:5550 --json

Exit code 0 when nothing will fail (warnings are shown with their fix), 9 when a problem
was found.""")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.option("--timeout", metavar="DURATION", default="3s", show_default=True,
              help="How long to wait for the daemon's answer.")
def doctor(as_json: bool, timeout: str) -> None:
    """Check the setup: the settings, the store (there, writable, its filesystem), the
    daemon (reachable, active or standby, CURVE), clock skew, the lease and heartbeat.

    Each finding that is not fine says how to fix it. The daemon asked is the one at
    --connect, else the control address of the settings.
    """
    from ckptd.client.doctor import PROBLEM, WARNING, count, diagnose
    from ckptd.core.config import Settings, load_settings

    ctx = _ctx()
    seconds = parse_duration(timeout, "--timeout")
    root = ctx.flags.get("root") or os.environ.get("CKPTD_ROOT")

    def fallback() -> Settings:  # the settings were invalid: go on with the root and defaults
        return load_settings(None, env={}, flags={"root": root})

    findings = diagnose(ctx.settings, fallback, ctx.connect, timeout=seconds,
                        root_given=bool(root) or bool(ctx.config_file))
    if as_json:
        _print_json({"findings": [f.as_dict() for f in findings],
                     "problems": count(findings, PROBLEM),
                     "warnings": count(findings, WARNING)})
    else:
        for finding in findings:
            click.echo(f"{finding.topic:<9} {finding.level:<8} {finding.text}")
            if finding.fix:
                click.echo(f"{'':<18} fix: {finding.fix}")
        click.echo(f"{count(findings, PROBLEM)} problem(s), {count(findings, WARNING)} "
                   "warning(s)")
    if count(findings, PROBLEM):
        sys.exit(exits.PROBLEMS)


for _command in (*controls.COMMANDS,  # pause, resume, limit, schedules
                 *joblogs.COMMANDS, *encryption.COMMANDS,  # logs, encryption-key
                 *console.COMMANDS, *graphs.COMMANDS):  # console-user, replay, move; signal, graph
    cli.add_command(_command)


def main(args: list[str] | None = None) -> None:
    """Entry point of the ``ckptd`` console script: run, then exit with the code."""
    argv = sys.argv[1:] if args is None else args

    def debug() -> bool:  # --log-level debug (anywhere), or CKPTD_LOG_LEVEL=debug
        pairs = zip(argv, argv[1:] + [""])
        return (os.environ.get("CKPTD_LOG_LEVEL") == "debug" or "--log-level=debug" in argv
                or ("--log-level", "debug") in pairs)

    sys.exit(exits.run(lambda: cli.main(args=argv, prog_name="ckptd", standalone_mode=False),
                       debug))
