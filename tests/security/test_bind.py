"""Safe defaults: loopback unless told; any other address needs CURVE or an explicit --insecure.

A real non-loopback bind happens only inside a private network namespace (``unshare -rn``,
skipped where it is not allowed): the test binds 10.1.2.3 on that namespace's own loopback
device, which nothing outside it can reach.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ckptd.core.config import Settings, load_settings
from ckptd.core.errors import ConfigError
from ckptd.wire.endpoints import KEYS_HELP, check_bind
from tests.procs import REPO, base_env, free_port

from .conftest import Keys

LOCAL = ["tcp://127.0.0.1:5550", "tcp://127.9.8.7:5550", "tcp://[::1]:5550",
         "tcp://localhost:5550", "ipc:///run/ckptd/control", "inproc://control"]
EXPOSED = ["tcp://10.1.2.3:5550", "tcp://0.0.0.0:5550", "tcp://*:5550", "tcp://[::]:5550",
           "tcp://eth0:5550", "tcp://ckptd.example.com:5550", "tcp://192.168.1.10:5550",
           "tcp://[::ffff:127.0.0.1]:5550", "tcp://127.0.0.1.example.com:5550",
           "ws://0.0.0.0:5550", "udp://0.0.0.0:5550"]


def test_the_default_endpoints_are_loopback() -> None:
    settings = Settings()
    for endpoint in (settings.control, settings.dispatch):
        assert endpoint.startswith("tcp://127.0.0.1:")
        check_bind(endpoint, settings)  # allowed without anything


@pytest.mark.parametrize("endpoint", LOCAL)
def test_loopback_and_local_transports_need_nothing(endpoint: str,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        check_bind(endpoint, Settings())
    assert not caplog.records


@pytest.mark.parametrize("endpoint", EXPOSED)
def test_other_addresses_are_refused_without_curve_with_the_way_to_set_up_keys(
        endpoint: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_bind(endpoint, Settings())
    assert KEYS_HELP in str(caught.value) and "ckptd keygen" in str(caught.value)
    for half in ({"curve_secret_key": "server.key_secret"}, {"authorized_keys": "keys/"}):
        with pytest.raises(ConfigError):  # half a CURVE set-up is no CURVE
            check_bind(endpoint, Settings(**half))


@pytest.mark.parametrize("endpoint", EXPOSED)
def test_insecure_allows_them_with_a_warning(endpoint: str,
                                             caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ckptd.wire.endpoints"):
        check_bind(endpoint, Settings(insecure=True))
    assert any("INSECURE" in r.getMessage() and endpoint in r.getMessage()
               for r in caplog.records)


@pytest.mark.parametrize("endpoint", EXPOSED)
def test_curve_allows_them_without_a_warning(endpoint: str,
                                             caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        check_bind(endpoint, Settings(curve_secret_key="server.key_secret",
                                      authorized_keys="authorized_keys"))
    assert not caplog.records


def test_the_settings_come_from_flags_environment_and_file(tmp_path: Path) -> None:
    config = tmp_path / "ckptd.toml"
    config.write_text('curve_secret_key = "/etc/ckptd/keys/server.key_secret"\n'
                      'authorized_keys = "/etc/ckptd/authorized_keys"\n'
                      'server_key = "/etc/ckptd/keys/server.key"\n')
    settings = load_settings(str(config), env={"CKPTD_CLIENT_KEY": "/k/vm2.key_secret"},
                             flags={"server_key": "/flag/server.key"})
    assert settings.curve_secret_key == "/etc/ckptd/keys/server.key_secret"
    assert settings.authorized_keys == "/etc/ckptd/authorized_keys"
    assert settings.server_key == "/flag/server.key"
    assert settings.client_key == "/k/vm2.key_secret"
    assert load_settings(env={}).curve_secret_key is None


def serve(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ckptd", *args], capture_output=True,
                          text=True, timeout=60, cwd=REPO, env=base_env(**env))


@pytest.mark.slow
def test_serve_refuses_a_non_loopback_address_before_binding_anything(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    dispatch = f"tcp://127.0.0.1:{free_port()}"
    result = serve("--root", str(tmp_path / "store"), "serve", "--control",
                   "tcp://10.1.2.3:5550", "--dispatch", dispatch, "--ready-file", str(ready))
    assert result.returncode == 5
    assert "refusing to bind tcp://10.1.2.3:5550 without CURVE" in result.stderr
    assert "ckptd keygen" in result.stderr and "--insecure" in result.stderr
    assert "serving" not in result.stderr and not ready.exists()
    assert not (tmp_path / "store").exists(), "it stopped before touching the store"


def can_unshare() -> bool:
    if not (shutil.which("unshare") and shutil.which("ip")):
        return False
    probe = subprocess.run(["unshare", "-rn", "ip", "link", "set", "lo", "up"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


needs_netns = pytest.mark.skipif(not can_unshare(),
                                 reason="cannot create a private network namespace here")


def in_netns(tmp_path: Path, flags: list[str], **env: str) -> dict[str, Any]:
    """Run a daemon bound to 10.1.2.3 inside a private network namespace; see netns_driver."""
    driver = os.path.join(os.path.dirname(__file__), "netns_driver.py")
    result = subprocess.run(["unshare", "-rn", sys.executable, driver,
                             str(tmp_path / "store"), *flags],
                            capture_output=True, text=True, timeout=180, cwd=REPO,
                            env=base_env(**env))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.slow
@needs_netns
def test_in_a_private_namespace_a_non_loopback_bind_needs_insecure_or_curve(
        tmp_path: Path, keys: Keys) -> None:
    refused = in_netns(tmp_path, [])
    assert refused["daemon_rc"] == 5 and "without CURVE" in refused["log"]

    insecure = in_netns(tmp_path, ["--insecure"])
    assert insecure["status_rc"] == 0, insecure
    assert insecure["bound"]["control"] == "tcp://10.1.2.3:5550"
    assert "INSECURE: tcp://10.1.2.3:5550 is bound without CURVE" in insecure["log"]
    assert "INSECURE: tcp://10.1.2.3:5551" in insecure["log"]

    admin = keys.client("admin")
    curve = in_netns(tmp_path, [], CKPTD_CURVE_SECRET_KEY=keys.server.secret,
                     CKPTD_AUTHORIZED_KEYS=str(keys.authorized),
                     CKPTD_SERVER_KEY=keys.server.public, CKPTD_CLIENT_KEY=admin.secret)
    assert curve["status_rc"] == 0, curve
    assert curve["bound"]["control"] == "tcp://10.1.2.3:5550"
    assert "INSECURE" not in curve["log"]
