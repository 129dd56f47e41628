"""The standard AWS configuration of a bucket, read as boto3 and the AWS CLI read it.

What ckptd sets itself wins (``s3_endpoint_url``/``CKPTD_S3_ENDPOINT_URL`` and
``[storage_options]``); after that, first found wins:

- the profile: ``profile`` in ``[storage_options]``, ``AWS_PROFILE``,
  ``AWS_DEFAULT_PROFILE``, else ``default``; its settings are read from ``AWS_CONFIG_FILE``
  (default ``~/.aws/config``, section ``[profile NAME]`` or ``[default]``);
- the endpoint: ``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``, the profile's ``services``
  section (``s3 =`` then ``endpoint_url = ...``), the profile's own ``endpoint_url``
  (``AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true``, or ``ignore_configured_endpoint_urls =
  true`` in the profile, skips these four), then object_store's own ``AWS_ENDPOINT``; none
  is AWS itself;
- the region: ``AWS_REGION``, ``AWS_DEFAULT_REGION``, the profile's ``region``;
- the addressing style: the profile's ``s3 =`` then ``addressing_style = path|virtual|auto``;
  ``auto`` (the default) is what botocore does: virtual-hosted (``BUCKET.s3.REGION.
  amazonaws.com``) on AWS for a bucket name that can be a host name, path-style
  (``ENDPOINT/BUCKET``) on any other endpoint.

An ``http://`` endpoint is allowed whatever its source (boto3 needs no switch for it).
Credentials are botocore's chain (:mod:`ckptd.store.s3.options`). The files are parsed by
botocore's own reader, so ``[profile NAME]``, nested ``s3 =`` settings and ``[services X]``
sections mean here what they mean to the AWS CLI.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ckptd.core.json_parts import table

AWS = "AWS"
STYLES = ("auto", "path", "virtual")
_HOST_LABEL = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class Setting:
    """A value and where it came from (for ``doctor`` and error messages)."""

    value: str | None
    source: str  # "AWS_ENDPOINT_URL", "profile 'x' in ~/.aws/config", "ckptd", "default"


@dataclass(frozen=True)
class BucketAddress:
    """How to reach one bucket: the endpoint, the region, the addressing style, the profile."""

    bucket: str
    endpoint: Setting  # value None: AWS itself
    region: Setting
    style: Setting  # "path" or "virtual" (resolved from "auto")
    profile: Setting
    config_file: str

    @property
    def virtual(self) -> bool:
        return self.style.value == "virtual"

    @property
    def allow_http(self) -> bool:
        return (self.endpoint.value or "").lower().startswith("http://")

    def url(self) -> str:
        """The endpoint requests go to (with the bucket in the host name when
        virtual-hosted)."""
        endpoint = self.endpoint.value
        if endpoint is None:
            region = self.region.value or "us-east-1"
            return (f"https://{self.bucket}.s3.{region}.amazonaws.com" if self.virtual
                    else f"https://s3.{region}.amazonaws.com")
        if not self.virtual:
            return endpoint.rstrip("/")
        scheme, sep, rest = endpoint.partition("://")
        return f"{scheme}{sep}{self.bucket}.{rest}".rstrip("/")

    def where(self) -> str:
        """The server in words: ``AWS (region eu-west-1)`` or the endpoint and its source."""
        if self.endpoint.value is None:
            return f"{AWS} (region {self.region.value or 'us-east-1'})"
        return f"{self.endpoint.value} (from {self.endpoint.source})"

    def describe(self) -> str:
        """One line for ``doctor``: every setting with its source."""
        region = self.region.value or "us-east-1"
        return (f"endpoint {self.where()}, region {region} (from {self.region.source}), "
                f"{self.style.value}-style addressing (from {self.style.source}), profile "
                f"{self.profile.value or 'default'} (from {self.profile.source})")


def _env(environ: Mapping[str, str], *names: str) -> Setting | None:
    for name in names:
        value = environ.get(name)
        if value:
            return Setting(value, name)
    return None


def _true(value: object) -> bool:
    return str(value).strip().lower() == "true"


def config_path(environ: Mapping[str, str]) -> str:
    """The shared config file boto3 reads (``AWS_CONFIG_FILE``, else ``~/.aws/config``)."""
    return os.path.expanduser(environ.get("AWS_CONFIG_FILE") or "~/.aws/config")


def read_profiles(path: str) -> dict[str, object]:
    """The profiles and ``services`` sections of a config file ({} when it does not exist)."""
    if not os.path.isfile(path):
        return {}
    from botocore.configloader import load_config
    from botocore.exceptions import ConfigParseError

    try:
        return dict(load_config(path))
    except ConfigParseError as exc:
        raise ValueError(f"cannot read the AWS config file {path}: {exc}") from None


def resolve(bucket: str, options: Mapping[str, object],
            environ: Mapping[str, str] | None = None) -> BucketAddress:
    """Where ``bucket`` is, from ckptd's ``options`` (``[storage_options]`` with the
    endpoint setting in it), the environment and the AWS config file (module docstring).

    Raises ValueError for a config file that cannot be parsed or an unknown style.
    """
    env = os.environ if environ is None else environ
    client_kwargs = table(options.get("client_kwargs"))
    config_kwargs = table(options.get("config_kwargs"))
    profile = (Setting(str(options["profile"]), "[storage_options] profile")
               if options.get("profile") else
               _env(env, "AWS_PROFILE", "AWS_DEFAULT_PROFILE") or Setting(None, "default"))
    path = config_path(env)
    shown = path.replace(os.path.expanduser("~"), "~", 1)
    parsed = read_profiles(path)
    name = profile.value or "default"
    scoped = table(table(parsed.get("profiles")).get(name))
    in_file = f"profile {name!r} in {shown}"
    endpoint = _own_endpoint(options, client_kwargs) or _configured_endpoint(
        env, scoped, parsed, in_file) or _env(env, "AWS_ENDPOINT") or Setting(None, AWS)
    region = (_own_region(options, client_kwargs)
              or _env(env, "AWS_REGION", "AWS_DEFAULT_REGION")
              or (Setting(str(scoped["region"]), in_file) if scoped.get("region") else None)
              or Setting(None, "default"))
    scoped_s3 = table(scoped.get("s3"))
    style = _own_style(options, config_kwargs) or (
        Setting(str(scoped_s3.get("addressing_style")), in_file)
        if scoped_s3.get("addressing_style") else Setting("auto", "default"))
    if style.value not in STYLES:
        raise ValueError(f"addressing_style {style.value!r} ({style.source}): expected one of "
                         f"{', '.join(STYLES)}")
    if style.value == "auto":
        virtual = endpoint.value is None and "." not in bucket \
            and _HOST_LABEL.match(bucket) is not None
        style = Setting("virtual" if virtual else "path",
                        f"auto: {'AWS' if endpoint.value is None else 'a custom endpoint'}"
                        if style.source == "default" else f"auto, {style.source}")
    return BucketAddress(bucket, endpoint, region, style, profile, shown)


def _own_endpoint(options: Mapping[str, object], client_kwargs: Mapping[str, object]
                  ) -> Setting | None:
    for value, source in ((options.get("endpoint_url"), "ckptd's s3_endpoint_url"),
                          (client_kwargs.get("endpoint_url"),
                           "[storage_options] client_kwargs")):
        if value:
            return Setting(str(value), source)
    return None


def _configured_endpoint(env: Mapping[str, str], scoped: Mapping[str, object],
                         parsed: Mapping[str, object], in_file: str) -> Setting | None:
    if _true(env.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")) or _true(
            scoped.get("ignore_configured_endpoint_urls")):
        return None
    found = _env(env, "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
    if found is not None:
        return found
    section = scoped.get("services")
    if section:
        services = table(parsed.get("services")).get(str(section))
        if not services:
            raise ValueError(f"{in_file} names services section {section!r}, which the file "
                             "does not have")
        s3 = table(services).get("s3")
        if isinstance(s3, Mapping) and s3.get("endpoint_url"):
            return Setting(str(s3["endpoint_url"]), f"{in_file}, services {section!r}")
    if scoped.get("endpoint_url"):
        return Setting(str(scoped["endpoint_url"]), in_file)
    return None


def _own_region(options: Mapping[str, object], client_kwargs: Mapping[str, object]
                ) -> Setting | None:
    for value, source in ((options.get("region_name"), "[storage_options] region_name"),
                          (options.get("region"), "[storage_options] region"),
                          (client_kwargs.get("region_name"),
                           "[storage_options] client_kwargs")):
        if value:
            return Setting(str(value), source)
    return None


def _own_style(options: Mapping[str, object], config_kwargs: Mapping[str, object]
               ) -> Setting | None:
    s3 = config_kwargs.get("s3")
    if isinstance(s3, Mapping) and s3.get("addressing_style"):
        return Setting(str(s3["addressing_style"]), "[storage_options] config_kwargs")
    if "virtual_hosted_style_request" in options:
        virtual = options["virtual_hosted_style_request"]
        return Setting("virtual" if virtual is True or _true(virtual) else "path",
                       "[storage_options] virtual_hosted_style_request")
    return None
