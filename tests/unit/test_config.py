"""Settings: flag > CKPTD_* environment > TOML file > default, and clear refusals."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ckptd.core.config import FsyncMode, Settings, describe_settings, load_settings
from ckptd.core.errors import ConfigError, InvalidName


@pytest.fixture
def toml(tmp_path: Path) -> Callable[..., str]:
    """Factory: write a TOML file and return its path."""

    def write(text: str, name: str = "ckptd.toml") -> str:
        path = tmp_path / name
        path.write_text(text)
        return str(path)

    return write


def test_defaults_with_nothing_set() -> None:
    settings = load_settings(env={})
    assert settings == Settings()
    assert settings.fsync is FsyncMode.BATCH
    assert settings.lease == 60.0 and settings.blob_threshold == 256 * 1024
    assert settings.control.startswith("tcp://127.0.0.1:")


FILE = """
fsync = "never"
lease = "2m"
blob_threshold = "1MiB"
max_attempts = 4
root = "/from/file"
"""


def test_file_beats_default(toml: Callable[..., str]) -> None:
    settings = load_settings(toml(FILE), env={})
    assert settings.fsync is FsyncMode.NEVER
    assert settings.lease == 120.0
    assert settings.blob_threshold == 1024 * 1024
    assert settings.max_attempts == 4
    assert settings.root == "/from/file"
    assert settings.heartbeat == 5.0  # not in the file: default


def test_env_beats_file(toml: Callable[..., str]) -> None:
    env = {"CKPTD_FSYNC": "always", "CKPTD_LEASE": "90s", "CKPTD_MAX_ATTEMPTS": "7"}
    settings = load_settings(toml(FILE), env=env)
    assert settings.fsync is FsyncMode.ALWAYS
    assert settings.lease == 90.0
    assert settings.max_attempts == 7
    assert settings.blob_threshold == 1024 * 1024  # only in the file
    assert settings.root == "/from/file"


def test_flag_beats_env(toml: Callable[..., str]) -> None:
    env = {"CKPTD_FSYNC": "always", "CKPTD_LEASE": "90s", "CKPTD_ROOT": "/from/env"}
    flags = {"fsync": "batch", "root": "/from/flag", "lease": None, "max_attempts": None}
    settings = load_settings(toml(FILE), env=env, flags=flags)
    assert settings.fsync is FsyncMode.BATCH
    assert settings.root == "/from/flag"
    assert settings.lease == 90.0  # a None flag means "not given"
    assert settings.max_attempts == 4  # from the file


def test_each_level_alone_over_default(toml: Callable[..., str]) -> None:
    assert load_settings(env={"CKPTD_BLOB_THRESHOLD": "10KiB"}).blob_threshold == 10 * 1024
    # the old name of the setting is still understood, everywhere
    assert load_settings(env={"CKPTD_INLINE_LIMIT": "10KiB"}).blob_threshold == 10 * 1024
    assert load_settings(toml('inline_limit = 4096'), env={}).blob_threshold == 4096
    assert load_settings(env={}, flags={"blob_threshold": "2KiB"}).blob_threshold == 2048
    assert load_settings(toml('blob_threshold = 4096'), env={}).blob_threshold == 4096


def test_empty_env_value_is_ignored(toml: Callable[..., str]) -> None:
    settings = load_settings(toml(FILE), env={"CKPTD_FSYNC": ""})
    assert settings.fsync is FsyncMode.NEVER


def test_config_file_from_env_and_explicit_file_wins(toml: Callable[..., str]) -> None:
    from_env = toml('root = "/env-file"', "env.toml")
    explicit = toml('root = "/explicit-file"', "explicit.toml")
    assert load_settings(env={"CKPTD_CONFIG": from_env}).root == "/env-file"
    assert load_settings(explicit, env={"CKPTD_CONFIG": from_env}).root == "/explicit-file"


def test_unrelated_env_is_ignored() -> None:
    env = {"CKPTD_CRASH_AT": "after_rename", "CKPTD_CONNECT": "tcp://127.0.0.1:1", "HOME": "/"}
    assert load_settings(env=env) == Settings()


def test_unknown_key_is_refused_with_a_suggestion(toml: Callable[..., str]) -> None:
    path = toml('fsyn = "never"')
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    message = str(info.value)
    assert "unknown setting 'fsyn'" in message and "did you mean 'fsync'" in message
    assert path in message


def test_unknown_flag_is_refused_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match="did you mean 'lease'"):
        load_settings(env={}, flags={"leese": "5m"})


def test_unknown_table_is_refused(toml: Callable[..., str]) -> None:
    with pytest.raises(ConfigError, match=r"unknown table \[daemon\]"):
        load_settings(toml('[daemon]\nlease = "5m"'), env={})


def test_queue_tables(toml: Callable[..., str]) -> None:
    path = toml('max_attempts = 2\n[queues.price]\nmax_attempts = 5\nlease = "2m"\n'
                'next = "publish"\n')
    settings = load_settings(path, env={})
    assert settings.max_attempts_for("price") == 5
    assert settings.lease_for("price") == 120.0
    assert settings.queue("price").next == "publish"
    assert settings.max_attempts_for("other") == 2
    assert settings.lease_for("other") == 60.0


@pytest.mark.parametrize(("text", "error", "match"), [
    ('[queues.price]\nretries = 5', ConfigError, r"unknown setting\(s\) \['retries'\]"),
    ('[queues."../x"]\nlease = "5m"', InvalidName, "queue name"),
    ('[queues.price]\nnext = "a/b"', InvalidName, "queue name"),
    ('heartbeat = "5s"\n[queues.price]\nlease = "1s"', ConfigError,
     r"shorter than the lease of \[queues.price\]"),
    ('queues = 3', ConfigError, "table of tables"),
])
def test_bad_queue_tables(toml: Callable[..., str], text: str, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        load_settings(toml(text), env={})


@pytest.mark.parametrize(("source", "name", "value", "match"), [
    ("env", "FSYNC", "sometimes", "always, batch or never"),
    ("env", "LEASE", "soon", "duration"),
    ("env", "INLINE_LIMIT", "big", "size"),
    ("env", "MAX_ATTEMPTS", "0", "at least 1"),
    ("env", "MAX_ATTEMPTS", "three", "whole number"),
    ("env", "FILE_MODE", "rw-r-----", "octal"),
    ("env", "METRICS_PORT", "70000", "port"),
    ("env", "BACKOFF_JITTER", "2", "0 to 1"),
    ("env", "INSECURE", "maybe", "true or false"),
    ("env", "LOG_LEVEL", "loud", "debug, info"),
    ("toml", "max_attempts", "2.5", "whole number"),
    ("toml", "lease", "nan", "finite"),
    ("toml", "root", "3", "string"),
])
def test_bad_values_say_what_and_where(toml: Callable[..., str], source: str, name: str, value: str,
                                       match: str) -> None:
    if source == "env":
        args: dict[str, object] = {"env": {f"CKPTD_{name}": value}}
        where = f"$CKPTD_{name}"
    else:
        args = {"config_file": toml(f"{name} = {value}"), "env": {}}
        where = "ckptd.toml"
    with pytest.raises(ConfigError, match=match) as info:
        load_settings(**args)
    assert where in str(info.value)


def test_modes_and_booleans_are_parsed() -> None:
    settings = load_settings(env={"CKPTD_FILE_MODE": "0600", "CKPTD_INSECURE": "yes"})
    assert settings.file_mode == 0o600 and settings.insecure is True


def test_cross_checks() -> None:
    with pytest.raises(ConfigError, match="heartbeat"):
        load_settings(env={"CKPTD_HEARTBEAT": "1m", "CKPTD_LEASE": "30s"})
    with pytest.raises(ConfigError, match="backoff_cap"):
        load_settings(env={"CKPTD_BACKOFF_BASE": "10s", "CKPTD_BACKOFF_CAP": "1s"})


def test_broken_or_missing_file(toml: Callable[..., str], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(toml("fsync = "), env={})
    with pytest.raises(ConfigError, match="not found"):
        load_settings(str(tmp_path / "missing.toml"), env={})


def test_every_setting_is_documented() -> None:
    described = describe_settings()
    assert {name for name, _, _ in described} >= {"root", "fsync", "lease", "blob_threshold"}
    assert all(doc for _, _, doc in described)
