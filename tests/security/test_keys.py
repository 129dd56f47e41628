"""Key files and the ZAP decision, in-process: what is let in, what is refused and why."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import zmq
from zmq.utils import z85

from ckptd.core.config import Settings
from ckptd.core.errors import AuthError, CkptdError, ConfigError
from ckptd.wire.security import (
    CurveServer,
    check_private,
    client_curve,
    keygen,
    load_authorized_keys,
    load_key_pair,
    load_public_key,
)

from .conftest import Keys


def zap_request(key: bytes, mechanism: bytes = b"CURVE") -> list[bytes]:
    """A ZAP request as libzmq sends it (after the envelope)."""
    return [b"1.0", b"7", b"ckptd", b"127.0.0.1", b"", mechanism, z85.decode(key)]


def test_the_zap_handler_lets_in_only_the_authorized_keys(keys: Keys) -> None:
    good = keys.client("good")
    stranger = keys.client("stranger", authorize=False)
    server = CurveServer(keys.server.secret, str(keys.authorized))
    reply, reason = server.decide(zap_request(load_public_key(good.public)))
    assert reply[2] == b"200" and reply[4] == b"good" and reason is None
    reply, reason = server.decide(zap_request(load_public_key(stranger.public)))
    assert reply[1] == b"7" and reply[2] == b"400" and reason == "auth_denied"
    reply, reason = server.decide(zap_request(load_public_key(good.public))[:-1] + [])
    assert reply[2] == b"400"
    reply, reason = server.decide([b"1.0", b"7", b"ckptd", b"", b"", b"NULL"])
    assert reply[2] == b"400" and reason == "auth_mechanism"
    reply, reason = server.decide([b"2.0", b"x"])
    assert reply[2] == b"500" and reason == "zap_malformed"


def test_reload_reports_what_was_revoked_and_keeps_the_old_keys_on_error(
        keys: Keys, tmp_path: Path) -> None:
    first, second = keys.client("first"), keys.client("second")
    server = CurveServer(keys.server.secret, str(keys.authorized))
    keys.revoke("first")
    assert server.reload() == ["first"]
    assert server.decide(zap_request(load_public_key(first.public)))[0][2] == b"400"
    assert server.decide(zap_request(load_public_key(second.public)))[0][2] == b"200"
    with pytest.raises(AuthError):
        server.reload(str(tmp_path / "gone"))
    assert server.decide(zap_request(load_public_key(second.public)))[0][2] == b"200"


def test_the_folder_holds_only_public_key_files(keys: Keys,
                                                caplog: pytest.LogCaptureFixture) -> None:
    good = keys.client("good")
    (keys.authorized / "broken.key").write_text("public-key = \"not a key\"\n")
    (keys.authorized / "notes.txt").write_text("ignored")
    (keys.authorized / ".hidden.key").write_bytes(Path(good.public).read_bytes())
    with caplog.at_level(logging.WARNING):
        allowed = load_authorized_keys(str(keys.authorized))
    assert sorted(allowed.values()) == ["good"]
    assert any("broken.key" in r.getMessage() for r in caplog.records)


def test_secret_keys_must_be_private_and_secret(keys: Keys) -> None:
    os.chmod(keys.server.secret, 0o644)
    with pytest.raises(AuthError, match=f"chmod 600 {keys.server.secret}"):
        check_private(keys.server.secret)
    with pytest.raises(AuthError, match="readable by group or others"):
        CurveServer(keys.server.secret, str(keys.authorized))
    os.chmod(keys.server.public, 0o600)
    with pytest.raises(AuthError, match="is a public key; give the secret key"):
        load_key_pair(keys.server.public)
    with pytest.raises(AuthError, match="cannot read the secret key file"):
        load_key_pair(str(keys.root / "missing.key_secret"))


def test_client_keys_come_in_pairs(keys: Keys) -> None:
    pair = keys.client("vm1")
    assert client_curve(Settings()) is None
    with pytest.raises(ConfigError, match="both --server-key"):
        client_curve(Settings(server_key=keys.server.public))
    with pytest.raises(ConfigError, match="both --server-key"):
        client_curve(Settings(client_key=pair.secret))
    curve = client_curve(Settings(server_key=keys.server.public, client_key=pair.secret))
    assert curve is not None and curve.server == load_public_key(keys.server.public)
    with pytest.raises(ConfigError, match="CURVE needs both"):
        CurveServer.from_settings(Settings(curve_secret_key=keys.server.secret))
    assert CurveServer.from_settings(Settings()) is None


def test_keygen_refuses_bad_names_and_existing_files(tmp_path: Path) -> None:
    if not zmq.has("curve"):
        pytest.skip("this libzmq has no CURVE support")
    with pytest.raises(ConfigError):
        keygen(str(tmp_path), "../escape")
    public, secret = keygen(str(tmp_path / "k"), "vm1")
    assert (os.stat(tmp_path / "k").st_mode & 0o777) == 0o700
    with pytest.raises(CkptdError, match="already exists"):
        keygen(str(tmp_path / "k"), "vm1")
    assert load_key_pair(secret)[0] == load_public_key(public)
