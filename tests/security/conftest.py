"""Fixtures of the security tests: real processes (``procs``) and CURVE key pairs."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import zmq

from ckptd.wire.security import ClientCurve, keygen
from tests.procs import procs  # noqa: F401  (a fixture)


@dataclass
class KeyPair:
    """A key pair on disk: NAME.key (public) and NAME.key_secret."""

    public: str
    secret: str

    def curve(self, server: KeyPair) -> ClientCurve:
        """This pair as a client of ``server``."""
        return ClientCurve.from_files(server.public, self.secret)

    def worker_args(self, server: KeyPair) -> list[str]:
        """The ``ckptd worker`` options that use this pair against ``server``."""
        return ["--server-key", server.public, "--client-key", self.secret]


@dataclass
class Keys:
    """A daemon's keys and its authorized_keys folder, plus client pairs made on demand."""

    root: Path
    server: KeyPair = field(init=False)
    authorized: Path = field(init=False)

    def __post_init__(self) -> None:
        self.server = KeyPair(*keygen(str(self.root / "daemon"), "server"))
        self.authorized = self.root / "authorized_keys"
        self.authorized.mkdir()

    def client(self, name: str, authorize: bool = True) -> KeyPair:
        """A new client pair in its own folder; with ``authorize`` its public key is let in."""
        pair = KeyPair(*keygen(str(self.root / name), name))
        if authorize:
            (self.authorized / f"{name}.key").write_bytes(Path(pair.public).read_bytes())
        return pair

    def revoke(self, name: str) -> None:
        """Remove a client's public key from the folder (the daemon sees it after SIGHUP)."""
        os.unlink(self.authorized / f"{name}.key")

    def settings(self) -> dict[str, str]:
        """The daemon's CURVE settings, as procs.daemon(**settings) takes them."""
        return {"curve_secret_key": self.server.secret, "authorized_keys": str(self.authorized)}


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    """A daemon key pair and an empty authorized_keys folder (CURVE must be available)."""
    if not zmq.has("curve"):
        pytest.skip("this libzmq has no CURVE support")
    return Keys(tmp_path / "keys")
