"""How ckptd's bucket settings reach the S3 client.

The settings are the same whichever client sends the requests: ``s3_endpoint_url``,
``store_timeout``, ``store_concurrency``, the usual AWS environment and profiles, and the
``[storage_options]`` table, whose names are s3fs's (``key``, ``secret``, ``profile``,
``client_kwargs = {region_name = ...}``, ...). :func:`obstore_setup` maps them onto obstore's
configuration; :data:`HONOURED` lists what it understands. Names of obstore's own S3
configuration (``region``, ``virtual_hosted_style_request``, ...) pass through as they are.
A name it cannot honour raises :class:`NotHonoured`, and the store falls back to s3fs,
which takes anything ``s3fs.S3FileSystem`` takes (``s3_client = "s3fs"`` asks for it).

Credentials, first found wins: ``key``/``secret`` (and ``token``) in ``[storage_options]``;
``profile`` there; ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (and
``AWS_SESSION_TOKEN``); then botocore's own chain (``AWS_PROFILE``, ``~/.aws/credentials``
and ``config``, SSO, web identity, the container and instance roles, unless
``AWS_EC2_METADATA_DISABLED``), read through a credential provider that botocore refreshes.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal, Protocol

from ckptd.core.json_parts import table
from ckptd.store.s3.aws_config import BucketAddress, resolve

if TYPE_CHECKING:
    from obstore.store import ClientConfig, S3Credential

log = logging.getLogger(__name__)

CLIENT_KEY = "s3_client"  # [storage_options] s3_client = "obstore" | "s3fs"
CLIENTS = ("obstore", "s3fs")
CREDENTIALS_REFRESH = 300.0  # seconds: how often obstore asks botocore's chain again

# s3fs name -> obstore name, same value
_SAME = {"key": "access_key_id", "aws_access_key_id": "access_key_id",
         "secret": "secret_access_key", "aws_secret_access_key": "secret_access_key",
         "token": "session_token", "aws_session_token": "session_token",
         "region_name": "region"}
# s3fs names that change nothing on the bucket (caches, its own event loop, ...)
_NO_EFFECT = {"use_listings_cache", "skip_instance_cache", "listings_expiry_time",
              "max_paths", "default_block_size", "default_fill_cache", "default_cache_type",
              "cache_regions", "asynchronous", "loop", "max_concurrency", "fixed_upload_size",
              "version_aware"}
# botocore Config names that ckptd sets itself or that obstore does by default
_CONFIG_NO_EFFECT = {"retries", "request_checksum_calculation",
                     "response_checksum_validation", "signature_version", "region_name"}
_SSE = {"ServerSideEncryption": "server_side_encryption", "SSEKMSKeyId": "sse_kms_key_id"}

HONOURED = ("key, secret, token, profile, anon, requester_pays, endpoint_url, region_name, "
            "use_ssl, client_kwargs (endpoint_url, region_name, verify), config_kwargs "
            "(connect_timeout, read_timeout, max_pool_connections, s3.addressing_style), "
            "s3_additional_kwargs (ServerSideEncryption, SSEKMSKeyId), and obstore's own "
            "S3 configuration names")


class NotHonoured(ValueError):
    """Raised when ``[storage_options]`` holds something obstore cannot do (use s3fs)."""


def _no_client_options() -> ClientConfig:
    return {}


@dataclass
class ObstoreSetup:
    """What obstore's ``S3Store`` is built from."""

    address: BucketAddress
    config: dict[str, object] = field(default_factory=dict)
    client_options: ClientConfig = field(default_factory=_no_client_options)
    credentials: BotocoreCredentials | None = None
    credentials_from: str = ""


def client_choice(options: Mapping[str, object]) -> str:
    """The client asked for in ``[storage_options]`` (``s3_client``), default obstore."""
    choice = str(options.get(CLIENT_KEY) or "obstore")
    if choice not in CLIENTS:
        raise ValueError(f"[storage_options] {CLIENT_KEY} = {choice!r}: expected one of "
                         f"{', '.join(CLIENTS)}")
    return choice


def obstore_setup(bucket: str, options: Mapping[str, object], *, timeout: float,
                  concurrency: int) -> ObstoreSetup:
    """Map s3fs-style ``options``, the AWS environment and config file onto obstore's
    configuration (where the bucket is: :func:`~ckptd.store.s3.aws_config.resolve`).

    Raises :class:`NotHonoured` naming what it cannot map, ValueError for settings that
    cannot work (a config file that does not parse, an unknown addressing style).
    """
    setup = ObstoreSetup(address=resolve(bucket, options))
    config, client = setup.config, setup.client_options
    # botocore's own timeouts ended a stuck connection or read; these do the same, and the
    # deadline of each request (S3Requests) bounds the retries on top.
    client["connect_timeout"] = timedelta(seconds=max(0.5, min(5.0, timeout / 4)))
    client["read_timeout"] = timedelta(seconds=max(1.0, timeout / 2))
    client["timeout"] = timedelta(seconds=max(1.0, timeout))
    # A few connections beyond the requests of a group, for the leader lease's own.
    client["pool_max_idle_per_host"] = str(concurrency + 8)
    rest = {k: v for k, v in options.items() if k != CLIENT_KEY}
    client_kwargs = dict(table(rest.pop("client_kwargs", None)))
    config_kwargs = dict(table(rest.pop("config_kwargs", None)))
    extra = dict(table(rest.pop("s3_additional_kwargs", None)))
    profile = rest.pop("profile", None)
    address = setup.address
    # Explicit, so that obstore's own reading of AWS_* variables cannot disagree.
    config["endpoint"] = config["aws_endpoint_url_s3"] = address.url()
    config["virtual_hosted_style_request"] = address.virtual
    config["region"] = address.region.value or "us-east-1"
    for name in ("endpoint_url", "region_name", "region", "virtual_hosted_style_request"):
        rest.pop(name, None)
    client_kwargs.pop("endpoint_url", None)
    client_kwargs.pop("region_name", None)
    s3 = config_kwargs.get("s3")
    if isinstance(s3, dict):
        s3.pop("addressing_style", None)
    if not config_kwargs.get("s3"):
        config_kwargs.pop("s3", None)
    if rest.pop("use_ssl", True) is False or address.allow_http:
        client["allow_http"] = True
    if rest.pop("anon", False):
        config["skip_signature"] = True
    if rest.pop("requester_pays", False):
        config["request_payer"] = True
    for name in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token"):
        if name in client_kwargs:
            rest.setdefault(name, client_kwargs.pop(name))
    verify = client_kwargs.pop("verify", None)
    if verify is False:
        client["allow_invalid_certificates"] = True
    elif isinstance(verify, str):
        with open(verify, "rb") as handle:
            client["root_certificate"] = handle.read()
    timeouts: tuple[Literal["connect_timeout", "read_timeout"], ...] = (
        "connect_timeout", "read_timeout")
    for name in timeouts:
        if name in config_kwargs:
            client[name] = timedelta(seconds=_seconds(config_kwargs.pop(name), name))
    if "max_pool_connections" in config_kwargs:
        client["pool_max_idle_per_host"] = str(config_kwargs.pop("max_pool_connections"))
    for name, value in extra.items():
        if name not in _SSE:
            raise NotHonoured(f"s3_additional_kwargs {name}")
        config[_SSE[name]] = str(value)
    left = ([f"client_kwargs {k}" for k in client_kwargs]
            + [f"config_kwargs {k}" for k in config_kwargs if k not in _CONFIG_NO_EFFECT])
    if left:
        raise NotHonoured(", ".join(left))
    for name, value in rest.items():
        if name in _NO_EFFECT:
            continue
        config[_SAME.get(name, name)] = value  # obstore refuses a name it does not know
    setup.credentials_from = credentials_source(options, address)
    if setup.credentials_from.startswith("botocore"):
        setup.credentials = BotocoreCredentials(str(profile) if profile else None)
    return setup


def _seconds(value: object, what: str) -> float:
    if not isinstance(value, (int, float, str)):
        raise ValueError(f"[storage_options] config_kwargs {what} {value!r}: expected seconds")
    return float(value)


def credentials_source(options: Mapping[str, object], address: BucketAddress) -> str:
    """Where the bucket's credentials come from, in words (the first that applies)."""
    client_kwargs = table(options.get("client_kwargs"))
    if any(options.get(k) for k in ("key", "aws_access_key_id")) or client_kwargs.get(
            "aws_access_key_id"):
        return "[storage_options] key and secret"
    if options.get("anon") or options.get("skip_signature"):
        return "none (anon: unsigned requests)"
    if not options.get("profile") and os.environ.get("AWS_ACCESS_KEY_ID") and \
            os.environ.get("AWS_SECRET_ACCESS_KEY"):
        return "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    return (f"botocore's chain: profile {address.profile.value or 'default'} "
            f"({address.config_file}, ~/.aws/credentials), SSO, web identity, a container "
            "or instance role")


class _Frozen(Protocol):
    """botocore's ReadOnlyCredentials: the fields read here."""

    @property
    def access_key(self) -> str: ...
    @property
    def secret_key(self) -> str: ...
    @property
    def token(self) -> str | None: ...


class _Credentials(Protocol):
    """botocore's Credentials (RefreshableCredentials too): the method used here."""

    def get_frozen_credentials(self) -> _Frozen: ...


class _Session(Protocol):
    """botocore's Session: the method used here."""

    def get_credentials(self) -> _Credentials | None: ...


class BotocoreCredentials:
    """An obstore credential provider over botocore's credential chain (profiles, SSO, web
    identity, container and instance roles); raises when the chain finds nothing."""

    def __init__(self, profile: str | None) -> None:
        self.profile = profile
        self._session: _Session | None = None

    def _botocore(self) -> _Session:
        if self._session is None:
            import botocore.session

            self._session = botocore.session.Session(profile=self.profile)
        return self._session

    def __call__(self) -> S3Credential:
        from botocore.credentials import RefreshableCredentials
        from botocore.exceptions import BotoCoreError

        try:
            credentials = self._botocore().get_credentials()
        except BotoCoreError as exc:  # a profile that is nowhere, a role that refuses, ...
            raise NoCredentials(str(exc)) from None
        if credentials is None:
            raise NoCredentials("botocore's chain found none")
        frozen = credentials.get_frozen_credentials()
        expires = None
        if isinstance(credentials, RefreshableCredentials):
            expires = datetime.fromtimestamp(time.time() + CREDENTIALS_REFRESH, UTC)
        return {"access_key_id": frozen.access_key, "secret_access_key": frozen.secret_key,
                "token": frozen.token, "expires_at": expires}


class NoCredentials(Exception):
    """Raised inside obstore's credential provider when botocore's chain finds nothing."""
