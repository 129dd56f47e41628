"""Settings, and where they come from: flag > ``CKPTD_*`` environment > TOML file > default.

Every setting is a field of :class:`Settings` with its default and a one-line doc; the same
names are the TOML keys and, upper-cased with a ``CKPTD_`` prefix, the environment variables.
``config/ckptd.toml`` in the repository documents each one. Durations read ``30s``, ``5m``,
``2h``, ``7d``; sizes read ``256KiB``; file modes read ``0640``.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from ckptd.core.errors import CkptdError, ConfigError
from ckptd.core.key_settings import KEY_CONTROL_KEYS, KeySettings, parse_key_controls
from ckptd.core.names import check_queue, is_valid_name
from ckptd.core.queue_controls import QUEUE_CONTROL_KEYS, Rate, parse_queue_controls
from ckptd.core.schedule_settings import ScheduleSettings, parse_schedules
from ckptd.core.timefmt import parse_duration, parse_size
from ckptd.core.unique_windows import UNIQUE_CONTROL_KEYS, parse_unique_controls

ENV_PREFIX = "CKPTD_"


class FsyncMode(StrEnum):
    """How hard the store works to survive a power loss (a process crash is always safe)."""

    ALWAYS = "always"  # every operation is synced before it is reported
    BATCH = "batch"  # operations are synced in groups; each is reported after its group
    NEVER = "never"  # the OS decides: safe against a process crash, not a power loss


def _mode(value: object, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        try:
            number = int(str(value), 8)
        except ValueError:
            raise ConfigError(
                f"invalid {what} {value!r}: expected an octal mode like 0640") from None
    if not 0 <= number <= 0o7777:
        raise ConfigError(f"invalid {what} {value!r}: expected an octal mode like 0640")
    return number


def _number(value: object) -> str | int | float:
    """``value`` when ``int()`` and ``float()`` may read it; TypeError (as theirs) otherwise."""
    if isinstance(value, (str, int, float)):
        return value
    raise TypeError(f"not a number: {type(value).__name__}")


def _positive_int(value: object, what: str) -> int:
    try:
        number = int(_number(value))
    except (TypeError, ValueError):
        raise ConfigError(f"invalid {what} {value!r}: expected a whole number") from None
    if isinstance(value, bool) or number < 1 or (isinstance(value, float) and value != number):
        raise ConfigError(f"invalid {what} {value!r}: expected a whole number of at least 1")
    return number


def _fraction(value: object, what: str) -> float:
    try:
        number = float(_number(value))
    except (TypeError, ValueError):
        raise ConfigError(f"invalid {what} {value!r}: expected a number from 0 to 1") from None
    if not 0.0 <= number <= 1.0:
        raise ConfigError(f"invalid {what} {value!r}: expected a number from 0 to 1")
    return number


def _bool(value: object, what: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"invalid {what} {value!r}: expected true or false")


def _fsync(value: object, what: str) -> FsyncMode:
    try:
        return FsyncMode(str(value).lower())
    except ValueError:
        raise ConfigError(f"invalid {what} {value!r}: expected always, batch or never") from None


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"invalid {what} {value!r}: expected a string")
    return value


def _optional_text(value: object, what: str) -> str | None:
    return None if value in (None, "") else _text(value, what)


def _member_name(value: object, what: str) -> str:
    text = _text(value, what)
    if text and not is_valid_name(text):
        raise ConfigError(f"invalid {what} {value!r}: expected letters, digits, '-', '_' "
                          "and '.', not starting with a dot (e.g. daemon-a)")
    return text


def _queue_list(value: object, what: str) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ConfigError(f"invalid {what} {value!r}: expected a list of queue names "
                          '(lead = ["price", "mail"], or CKPTD_LEAD=price,mail)')
    names = [str(item).strip() for item in items if str(item).strip()]
    for name in names:
        try:
            check_queue(name)
        except CkptdError as exc:
            raise ConfigError(f"invalid {what}: {exc}") from None
    return tuple(dict.fromkeys(names))


def _names_list(value: object, what: str) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        raise ConfigError(f"invalid {what} {value!r}: expected a list of strings "
                          '(["a", "b"], or a,b in the environment)')
    return tuple(i.strip() for i in items if i.strip())


def _tracing(value: object, what: str) -> str:
    text = str(value).strip()
    if text.lower() in ("off", "on", "otlp", "false", "true", ""):
        return {"false": "off", "": "off", "true": "on"}.get(text.lower(), text.lower())
    if text.startswith("file:") and len(text) > 5:
        return text
    raise ConfigError(f"invalid {what} {value!r}: expected off, on, otlp or file:PATH")


def _host_list(value: object, what: str) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ConfigError(f"invalid {what} {value!r}: expected a list of host names "
                          '(console_hosts = ["ckptd.example.com"], or '
                          "CKPTD_CONSOLE_HOSTS=ckptd.example.com)")
    names = [str(item).strip().lower() for item in items if str(item).strip()]
    for name in names:
        if not all(c.isalnum() or c in "-.:[]" for c in name):
            raise ConfigError(f"invalid {what}: {name!r} is not a host name (no scheme, "
                              "path or port: ckptd.example.com)")
    return tuple(dict.fromkeys(names))


def _port(value: object, what: str) -> int:
    try:
        number = int(_number(value))
    except (TypeError, ValueError):
        raise ConfigError(f"invalid {what} {value!r}: expected a port number") from None
    if not 0 <= number <= 65535:
        raise ConfigError(f"invalid {what} {value!r}: expected a port from 0 to 65535")
    return number


def _choice(*choices: str) -> Callable[[object, str], str]:
    def parse(value: object, what: str) -> str:
        text = str(value).lower()
        if text not in choices:
            raise ConfigError(f"invalid {what} {value!r}: expected one of {', '.join(choices)}")
        return text
    return parse


_T = TypeVar("_T")
_V = TypeVar("_V")


def _setting(default: _T, parse: Callable[[_V, str], _T], doc: str) -> _T:
    return field(default=default, metadata={"parse": parse, "doc": doc})


@dataclass(frozen=True, kw_only=True)
class QueueSettings:
    """Settings of one queue (the ``[queues.NAME]`` tables); unset fields use the globals."""

    max_attempts: int | None = None
    lease: float | None = None
    next: str | None = None
    on_failure: str | None = None  # a queue that gets one job per job that lands in failed/
    time_limit: float | None = None
    # operator controls (ckptd.core.queue_controls)
    max_running: int | None = None
    rate: Rate | None = None
    keep_done: float | None = None
    keep_failed: float | None = None
    keep_last: int | None = None
    archive: bool | None = None
    unique: str | None = None
    unique_scope: str | None = None
    priority_aging: float | None = None
    # flow control by key (ckptd.core.key_settings) and uniqueness (ckptd.core.unique_windows)
    key: tuple[str, ...] | None = None  # the path into the payload of a job's key
    fair: bool | None = None
    keys: KeySettings | None = None
    unique_fields: tuple[str, ...] | None = None
    unique_window: float | None = None
    debounce: float | None = None
    prefer: str | None = None  # the daemon that should lead it while it is alive (buckets)


_NO_OVERRIDES = QueueSettings()


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every setting of ckptd, with its default."""

    # the store
    root: str = _setting("ckptd-data", _text,
                         "Where the queues live: a folder, file://, s3://bucket/prefix, memory://.")
    fsync: FsyncMode = _setting(FsyncMode.BATCH, _fsync,
                                "always | batch | never: how writes reach the disk.")
    blob_threshold: int = _setting(256 * 1024, parse_size,
                                   "Payloads and results larger than this are stored as a blob "
                                   "beside the job file (formerly inline_limit).")
    max_attempts: int = _setting(3, _positive_int,
                                 "Attempts a job gets before it is moved to failed/.")
    tmp_max_age: float = _setting(600.0, parse_duration,
                                  "Files left in tmp/ by a writer that died are removed "
                                  "once older than this (at start and at every rescan).")
    file_mode: int = _setting(0o640, _mode, "Mode of the job and checkpoint files created.")
    dir_mode: int = _setting(0o750, _mode, "Mode of the folders created.")
    # buckets (see ckptd.store.s3.backend and docs/guide/buckets.md)
    s3_endpoint_url: str | None = _setting(None, _optional_text,
                                           "S3-compatible server to use instead of AWS, "
                                           "e.g. http://127.0.0.1:8333.")
    store_timeout: float = _setting(10.0, parse_duration,
                                    "Deadline of one bucket request (retries included).")
    store_concurrency: int = _setting(64, _positive_int,
                                      "Bucket requests in flight at once.")
    leader_lease: float = _setting(10.0, parse_duration,
                                   "Buckets: lease of the active daemon (a standby takes "
                                   "over within 2x this); 0 = no leader lease.")
    # several daemons on one store (docs/scaling.md)
    name: str = _setting("", _member_name,
                         "This daemon's name among the daemons of one store (membership, "
                         "routing, [queues.NAME] prefer); empty: HOST-CONTROLPORT.")
    advertise: str = _setting("", _text,
                              "The control address other daemons, workers and clients reach "
                              "this daemon at; empty: the bound one (the host name when it "
                              "is bound to every interface).")
    lead: tuple[str, ...] = _setting((), _queue_list,
                                     "Queues this daemon may lead (empty: any). On a local "
                                     "root each is led under a lock of its own, so several "
                                     "daemons share one root; without it a daemon leads the "
                                     "whole root.")
    # the daemon
    control: str = _setting("tcp://127.0.0.1:5550", _text,
                            "Control socket (submit, status, ...); workers need only this.")
    dispatch: str = _setting("tcp://127.0.0.1:5551", _text,
                             "Socket where workers connect to receive jobs and send answers.")
    lease: float = _setting(60.0, parse_duration,
                            "How long a claimed job may go without a heartbeat.")
    time_limit: float = _setting(0.0, parse_duration,
                                 "How long one attempt may run before its handler gets "
                                 "ckptd.TimeLimit (a job's own --time-limit wins); 0 = none.")
    heartbeat: float = _setting(0.0, parse_duration,
                                "How often workers send heartbeats for running jobs; 0 "
                                "(the default): a third of the shortest lease, at most 5s.")
    backoff_base: float = _setting(1.0, parse_duration,
                                   "Delay before the first retry; doubles per attempt.")
    backoff_cap: float = _setting(300.0, parse_duration,
                                  "Longest delay between retries.")
    backoff_jitter: float = _setting(0.2, _fraction,
                                     "Random spread of retry delays (0 to 1 of the delay).")
    drain_timeout: float = _setting(30.0, parse_duration,
                                    "On SIGTERM, how long to wait for running jobs' answers.")
    rescan_interval: float = _setting(30.0, parse_duration,
                                      "How often a local store is listed to catch what the "
                                      "watcher missed.")
    watcher: str = _setting("auto", _choice("auto", "inotify", "watchdog"),
                            "How local pending/ folders are watched: auto (inotify on Linux, "
                            "else watchdog), inotify or watchdog.")
    poll_interval: float = _setting(1.0, parse_duration,
                                    "How often a bucket store's pending/ folders are listed.")
    message_inline_limit: int = _setting(64 * 1024, parse_size,
                                         "Payloads up to this size travel inside the job "
                                         "message; larger ones are read from the store.")
    max_message_size: int = _setting(16 * 1024 * 1024, parse_size,
                                     "Largest ZeroMQ message accepted (MAXMSGSIZE).")
    log_level: str = _setting("info", _choice("debug", "info", "warning", "error"),
                              "debug | info | warning | error.")
    log_format: str = _setting("auto", _choice("auto", "text", "json"),
                               "text, json (one object per line) or auto (text, without "
                               "timestamps under systemd).")
    insecure: bool = _setting(False, _bool,
                              "Allow binding a non-loopback address without CURVE.")
    # CURVE (see ckptd.security and docs/guide/security.md)
    curve_secret_key: str | None = _setting(None, _optional_text,
                                            "The daemon's secret key file (ckptd keygen); "
                                            "turns on CURVE for every socket.")
    authorized_keys: str | None = _setting(None, _optional_text,
                                           "Folder of the public keys (*.key) of the workers "
                                           "and clients allowed in; re-read on SIGHUP.")
    server_key: str | None = _setting(None, _optional_text,
                                      "Workers and clients: the daemon's public key file.")
    client_key: str | None = _setting(None, _optional_text,
                                      "Workers and clients: their own secret key file.")
    metrics_port: int = _setting(0, _port, "HTTP port for /metrics and the dashboard; 0 = off.")
    metrics_bind: str = _setting("127.0.0.1", _text,
                                 "Address the metrics/dashboard port listens on.")
    # the operator console on metrics_port (docs/guide/console.md)
    console_actions: bool = _setting(False, _bool,
                                     "The console may act (retry, cancel, pause, bulk, "
                                     "replay) for users who log in; else it is read-only.")
    console_users: str | None = _setting(None, _optional_text,
                                         "File of the console's users and tokens, with "
                                         "their roles (ckptd console-user); re-read when "
                                         "it changes.")
    console_hosts: tuple[str, ...] = _setting((), _host_list,
                                              "Host names the console answers to besides "
                                              "localhost, 127.0.0.1 and ::1 (a proxy's).")
    drain_target: float = _setting(300.0, parse_duration,
                                   "ckptd_queue_workers_needed: the workers that would "
                                   "drain a queue's backlog within this long.")
    upload_limit_client: int = _setting(128 * 1024 * 1024, parse_size,
                                        "Bytes of uploads (submit-file --connect) one "
                                        "connection may hold in the daemon at once.")
    upload_limit_total: int = _setting(512 * 1024 * 1024, parse_size,
                                       "Bytes of uploads all clients may hold in the "
                                       "daemon at once.")
    # operator controls: defaults of every queue (docs/guide/operator-controls.md)
    keep_done: float = _setting(7 * 86400.0, parse_duration,
                                "Done jobs older than this are removed (or archived); 0 = "
                                "kept forever. [queues.NAME] keep_done overrides it.")
    keep_failed: float = _setting(30 * 86400.0, parse_duration,
                                  "Failed jobs older than this are removed (or archived); "
                                  "0 = kept forever.")
    archive: bool = _setting(False, _bool, "Retention moves finished jobs under "
                             "<queue>/archive/DATE/ instead of removing them.")
    retention_interval: float = _setting(60.0, parse_duration,
                                         "How often finished jobs are checked against "
                                         "keep_done, keep_failed and keep_last.")
    priority_aging: float = _setting(60.0, parse_duration,
                                     "A waiting job moves one priority level up per this "
                                     "long (no flood of urgent jobs starves the rest); 0 = "
                                     "strict priorities.")
    # hooks, traces, per-job logs, encryption (docs/guide/hooks.md, tracing.md, job-logs.md,
    # encryption.md)
    hooks: tuple[str, ...] = _setting((), _names_list,
                                      "Hooks of clients and workers, as MODULE:NAME "
                                      '(hooks = ["myapp.hooks:Sentry"]).')
    tracing: str = _setting("off", _tracing,
                            "OpenTelemetry traces (pip install ckptd[otel]): off, on (the "
                            "tracer provider your program set), otlp, or file:PATH.")
    tracing_baggage: bool = _setting(False, _bool,
                                     "Clients store the W3C baggage in the job beside "
                                     "its traceparent.")
    job_log_limit: int = _setting(1024 * 1024, parse_size,
                                  "Most bytes of a job's log kept per attempt (what a handler "
                                  "logs beyond it is dropped and counted).")
    encryption_key_file: str | None = _setting(None, _optional_text,
                                               "File of encryption keys (ID:BASE64 lines, the "
                                               "first seals): payloads, results and "
                                               "checkpoints are sealed with AES-256-GCM.")
    encryption_keys: str | None = _setting(None, _optional_text,
                                           "The keys themselves (ID:BASE64,...), for the "
                                           "environment: CKPTD_ENCRYPTION_KEYS.")
    encryption_clear_fields: tuple[str, ...] = _setting((), _names_list,
                                                        "Fields of a payload kept in clear "
                                                        "beside the sealed value (a flow-"
                                                        "control key).")
    # per-queue overrides, from [queues.NAME] tables
    queues: Mapping[str, QueueSettings] = field(default_factory=dict, metadata={"doc": ""})
    schedules: Mapping[str, ScheduleSettings] = field(default_factory=dict,
                                                      metadata={"doc": ""})
    storage_options: Mapping[str, object] = field(default_factory=dict, metadata={"doc": ""})

    def __post_init__(self) -> None:
        if self.heartbeat == 0:  # derived from the leases, unless given
            object.__setattr__(self, "heartbeat", derived_heartbeat(self.lease, self.queues))
            object.__setattr__(self, "heartbeat_derived", True)

    heartbeat_derived: bool = field(default=False, init=False, repr=False, compare=False,
                                    metadata={"doc": ""})
    """True when :attr:`heartbeat` was derived from the leases (it was not set)."""

    def queue(self, name: str) -> QueueSettings:
        """Return the settings of queue ``name`` (empty overrides when it has none)."""
        return self.queues.get(name) or _NO_OVERRIDES

    def max_attempts_for(self, queue: str) -> int:
        """Return the attempts budget of ``queue``."""
        return self.queue(queue).max_attempts or self.max_attempts

    def lease_for(self, queue: str) -> float:
        """Return the lease of ``queue`` in seconds."""
        return self.queue(queue).lease or self.lease

    def time_limit_for(self, queue: str) -> float | None:
        """Return the time limit of an attempt of ``queue`` in seconds, None for none."""
        limit = self.queue(queue).time_limit
        return (limit if limit is not None else self.time_limit) or None


HEARTBEAT_MAX = 5.0
"""The longest heartbeat derived from the leases (a shorter lease gets a third of it)."""


def derived_heartbeat(lease: float, queues: Mapping[str, QueueSettings]) -> float:
    """The heartbeat when none is set: a third of the shortest lease, at most 5 seconds."""
    leases = [lease] + [q.lease for q in queues.values() if q.lease]
    return min(HEARTBEAT_MAX, min(leases) / 3)


SIMPLE_FIELDS = {f.name: f for f in dataclasses.fields(Settings) if "parse" in f.metadata}
ALIASES = {"inline_limit": "blob_threshold"}
"""Old names still accepted (file, environment, flags), each for the setting it became."""


class LiveSettings:
    """The settings in force, shared by every part of a daemon that reads them.

    A reload (SIGHUP) replaces :attr:`current` here, once, and every holder sees the new
    values at its next read: nobody keeps a copy of its own.
    """

    def __init__(self, settings: Settings) -> None:
        self.current = settings


def live(settings: Settings | LiveSettings) -> LiveSettings:
    """Return ``settings`` as a shared holder (wrapping plain settings in a new one)."""
    return settings if isinstance(settings, LiveSettings) else LiveSettings(settings)


def _parse(name: str, value: object, source: str) -> object:
    name = ALIASES.get(name, name)
    spec = SIMPLE_FIELDS.get(name)
    if spec is None:
        close = difflib.get_close_matches(name, list(SIMPLE_FIELDS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown setting {name!r} in {source}{hint}")
    return spec.metadata["parse"](value, f"{name} ({source})")


def _queue_table(name: str, table: object, source: str) -> QueueSettings:
    check_queue(name)
    if not isinstance(table, dict):
        raise ConfigError(f"[queues.{name}] in {source} must be a table")
    known = {"max_attempts", "lease", "next", "on_failure", "time_limit", "prefer",
             *QUEUE_CONTROL_KEYS, *KEY_CONTROL_KEYS, *UNIQUE_CONTROL_KEYS}
    unknown = set(table) - known
    if unknown:
        raise ConfigError(f"unknown setting(s) {sorted(unknown)} in [queues.{name}] of {source}; "
                          f"known: {', '.join(sorted(known))}")
    nxt = table.get("next")
    if nxt is not None:
        check_queue(nxt)
    on_failure = table.get("on_failure")
    if on_failure is not None:
        check_queue(on_failure)
    prefer = table.get("prefer")
    if prefer is not None:
        prefer = _member_name(prefer, f"queues.{name}.prefer ({source})") or None
    return QueueSettings(
        max_attempts=(_positive_int(table["max_attempts"], f"queues.{name}.max_attempts")
                      if "max_attempts" in table else None),
        lease=parse_duration(table["lease"], f"queues.{name}.lease") if "lease" in table else None,
        next=nxt,
        on_failure=on_failure,
        time_limit=(parse_duration(table["time_limit"], f"queues.{name}.time_limit")
                    if "time_limit" in table else None),
        **parse_queue_controls(name, table, source),
        **parse_key_controls(name, table, source),
        **parse_unique_controls(name, table, source),
        prefer=prefer,
    )


def read_toml(path: str) -> dict[str, object]:
    """Return the settings in a TOML file; raise ConfigError saying what is wrong."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return data


def load_settings(config_file: str | None = None, env: Mapping[str, str] | None = None,
                  flags: Mapping[str, object] | None = None) -> Settings:
    """Build the settings from (lowest first) defaults, a TOML file, the environment, flags.

    ``config_file`` defaults to ``$CKPTD_CONFIG`` when set. ``flags`` holds only the options
    given on the command line (None values are ignored). Raises ConfigError on bad values.
    """
    env = os.environ if env is None else env
    config_file = config_file or env.get(ENV_PREFIX + "CONFIG") or None
    values: dict[str, Any] = {}  # each checked by its field's parser: of the field's type
    queues: dict[str, QueueSettings] = {}
    storage: dict[str, object] = {}
    schedules: dict[str, ScheduleSettings] = {}
    if config_file:
        data = read_toml(config_file)
        for key, value in data.items():
            if key == "queues":
                if not isinstance(value, dict):
                    raise ConfigError(f"'queues' in {config_file} must be a table of tables")
                queues = {n: _queue_table(n, t, config_file) for n, t in value.items()}
            elif key == "schedules":
                schedules = parse_schedules(value, config_file)
            elif key == "storage_options":
                if not isinstance(value, dict):
                    raise ConfigError(f"[storage_options] in {config_file} must be a table")
                storage = dict(value)
            elif isinstance(value, dict):
                raise ConfigError(f"unknown table [{key}] in {config_file}")
            else:
                values[ALIASES.get(key, key)] = _parse(key, value, config_file)
    for name in [*SIMPLE_FIELDS, *ALIASES]:
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None and raw != "":
            values[ALIASES.get(name, name)] = _parse(name, raw, f"${ENV_PREFIX}{name.upper()}")
    for name, value in (flags or {}).items():
        if value is not None:
            values[ALIASES.get(name, name)] = _parse(name, value, "the command line")
    settings = Settings(queues=queues, storage_options=storage, schedules=schedules, **values)
    _check(settings)
    return settings


def _check(settings: Settings) -> None:
    if settings.lease <= 0:
        raise ConfigError(f"lease ({settings.lease:g}s) must be longer than 0: set lease (or "
                          "CKPTD_LEASE, --lease) to how long a job may go without a heartbeat, "
                          "e.g. 60s")
    leases = [("the lease", settings.lease)] + [
        (f"the lease of [queues.{name}]", queue.lease)
        for name, queue in settings.queues.items() if queue.lease]
    for what, lease in leases:
        if settings.heartbeat >= lease:
            fix = f"{lease / 3:.3g}s"
            raise ConfigError(
                f"heartbeat ({settings.heartbeat:g}s) must be shorter than {what} "
                f"({lease:g}s), or every job would lose its lease: set heartbeat below it "
                f"(e.g. heartbeat = \"{fix}\" or CKPTD_HEARTBEAT={fix}), or leave heartbeat "
                "unset to derive it from the lease")
    if settings.backoff_cap < settings.backoff_base:
        raise ConfigError("backoff_cap must not be smaller than backoff_base")


def describe_settings() -> list[tuple[str, object, str]]:
    """Return (name, default, doc) of every simple setting, for --help and the docs test."""
    return [(name, f.default, f.metadata["doc"]) for name, f in SIMPLE_FIELDS.items()]


RESTART_ONLY = ("root", "control", "dispatch", "fsync", "metrics_port", "watcher",
                "file_mode", "metrics_bind", "dir_mode", "storage_options",
                "curve_secret_key", "insecure", "s3_endpoint_url", "store_timeout",
                "store_concurrency", "leader_lease", "name", "advertise", "lead")
"""Settings that only a restart can change: a reload keeps their old values."""


def reloaded_settings(old: Settings, config_file: str | None,
                      flags: Mapping[str, object] | None) -> Settings:
    """The settings a reload (SIGHUP) puts in force: read again from the file, environment
    and flags, with :data:`RESTART_ONLY` kept at their ``old`` values (logged as a warning
    when they changed). Raises ConfigError when the new settings are invalid."""
    import logging

    fresh = load_settings(config_file, flags=flags)
    changed = [name for name in RESTART_ONLY if getattr(fresh, name) != getattr(old, name)]
    if changed:
        logging.getLogger(__name__).warning(
            "reload: %s can only change with a restart; keeping the old value(s)",
            ", ".join(changed))
        fresh = dataclasses.replace(fresh, **{name: getattr(old, name) for name in changed})
    return fresh
