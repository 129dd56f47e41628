"""A bucket configured the standard AWS way, as boto3 and the AWS CLI users configure it.

Where the endpoint, region and addressing style come from is checked on
:func:`ckptd.store.s3.aws_config.resolve` (every source, in order); then real daemons,
workers and clients are configured only the way users do it (the ``AWS_*`` variables, a
``~/.aws/config`` in a ``HOME`` of the test's own, a profile with a role, SSO or a credential
process) against SeaweedFS on ``http://127.0.0.1``, with no ckptd S3 setting, and jobs run.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ckptd.store.s3.aws_config import resolve
from tests.bucket.sts_stub import StsStub
from tests.procs import REPO, Processes
from tests.s3server import ACCESS_KEY, REGION, SECRET_KEY, SeaweedServer

Q = "work"
FAST = {"heartbeat": "0.5s", "lease": "5s", "poll_interval": "0.3s", "rescan_interval": "3s",
        "leader_lease": "3s"}
ROLE = "arn:aws:iam::123456789012:role/ckptd"


# -- where the settings come from --------------------------------------------------------------


def write_config(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_the_endpoint_comes_from_ckptd_then_the_variables_then_the_profile(
        tmp_path: Path) -> None:
    config = write_config(tmp_path / "config", """
[default]
region = eu-west-1
endpoint_url = http://profile:9000

[profile other]
services = local
s3 =
    addressing_style = virtual

[services local]
s3 =
    endpoint_url = https://services.example:9443
""")
    env = {"AWS_CONFIG_FILE": config}
    found = resolve("jobs", {}, env)
    assert (found.endpoint.value, found.endpoint.source) == (
        "http://profile:9000", f"profile 'default' in {config}")
    assert (found.region.value, found.style.value) == ("eu-west-1", "path")
    assert found.allow_http and found.url() == "http://profile:9000"
    found = resolve("jobs", {}, {**env, "AWS_ENDPOINT_URL": "http://global:1"})
    assert (found.endpoint.value, found.endpoint.source) == ("http://global:1",
                                                             "AWS_ENDPOINT_URL")
    found = resolve("jobs", {}, {**env, "AWS_ENDPOINT_URL": "http://global:1",
                                 "AWS_ENDPOINT_URL_S3": "http://s3only:2"})
    assert found.endpoint.value == "http://s3only:2"
    found = resolve("jobs", {"endpoint_url": "http://ckptd:3"},
                    {**env, "AWS_ENDPOINT_URL_S3": "http://s3only:2"})
    assert (found.endpoint.value, found.endpoint.source) == ("http://ckptd:3",
                                                             "ckptd's s3_endpoint_url")
    # a profile chosen by AWS_PROFILE, its services section, virtual-hosted addressing
    found = resolve("jobs", {}, {**env, "AWS_PROFILE": "other"})
    assert found.endpoint.value == "https://services.example:9443"
    assert found.style.value == "virtual" and not found.allow_http
    assert found.url() == "https://jobs.services.example:9443"
    # switched off the way boto3 switches it off: AWS itself
    found = resolve("jobs", {}, {**env, "AWS_ENDPOINT_URL": "http://global:1",
                                 "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"})
    assert found.endpoint.value is None and found.where() == "AWS (region eu-west-1)"


def test_region_and_addressing_on_aws_as_botocore_chooses(tmp_path: Path) -> None:
    empty = {"AWS_CONFIG_FILE": str(tmp_path / "none")}
    found = resolve("my-jobs", {}, {**empty, "AWS_DEFAULT_REGION": "eu-central-1"})
    assert found.virtual and found.url() == "https://my-jobs.s3.eu-central-1.amazonaws.com"
    found = resolve("my.jobs", {}, {**empty, "AWS_REGION": "us-west-2",
                                    "AWS_DEFAULT_REGION": "eu-central-1"})
    assert not found.virtual and found.url() == "https://s3.us-west-2.amazonaws.com"
    found = resolve("jobs", {"config_kwargs": {"s3": {"addressing_style": "path"}},
                             "client_kwargs": {"region_name": "ap-south-1"}}, empty)
    assert found.url() == "https://s3.ap-south-1.amazonaws.com"
    with pytest.raises(ValueError, match="addressing_style 'sideways'"):
        resolve("jobs", {"config_kwargs": {"s3": {"addressing_style": "sideways"}}}, empty)
    config = write_config(tmp_path / "config", "[default]\nservices = gone\n")
    with pytest.raises(ValueError, match="services section 'gone'"):
        resolve("jobs", {}, {"AWS_CONFIG_FILE": config})


# -- real processes, configured as users configure them ----------------------------------------


@pytest.fixture
def user_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., Path]:
    """Clear every AWS_* and CKPTD_* variable of this process (children copy them), give
    it a HOME of its own, and set what a user would; returns that HOME."""
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    for name in list(os.environ):
        if name.startswith(("AWS_", "CKPTD_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance metadata here

    def setup(**variables: str) -> Path:
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        return home
    return setup


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ckptd", *args], cwd=REPO, text=True,
                          capture_output=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": REPO})


def run_jobs(procs: Processes, url: str, tmp_path: Path, count: int = 20) -> None:
    """A daemon, 2 workers and a client on ``url`` with this environment only: jobs run,
    and a payload too big for a message is read by the worker from the bucket itself."""
    daemon = procs.daemon(root=url, message_inline_limit="1KiB", **FAST)
    workers = [procs.worker(daemon, Q, "echo", concurrency=2) for _ in range(2)]
    client = daemon.client(timeout=30)
    try:
        ids = client.submit_many(Q, [{"n": n} for n in range(count)])
        big = client.submit(Q, {"blob": "x" * 4000})
        for job_id in [*ids, big]:
            assert client.wait(Q, job_id, timeout=120) == "done"
        assert client.result(Q, big)["echo"] == {"blob": "x" * 4000}
    finally:
        client.close()
    for worker in workers:
        worker.terminate()
    assert any("reading payloads straight from s3://" in w.log() for w in workers)
    listing = cli("--root", url, "status")
    assert listing.returncode == 0, listing.stderr
    assert f"{count + 1}" in listing.stdout  # the done count, read from the bucket


@pytest.mark.slow
def test_jobs_run_configured_only_by_aws_variables(
        procs: Processes, s3_server: SeaweedServer, user_env: Callable[..., Path],
        tmp_path: Path) -> None:
    user_env(AWS_ENDPOINT_URL=s3_server.endpoint, AWS_ACCESS_KEY_ID=ACCESS_KEY,
             AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_DEFAULT_REGION=REGION)
    run_jobs(procs, s3_server.url(), tmp_path)


@pytest.mark.slow
def test_jobs_run_configured_through_a_profile_in_the_aws_config_file(
        procs: Processes, s3_server: SeaweedServer, user_env: Callable[..., Path],
        tmp_path: Path) -> None:
    home = user_env(AWS_PROFILE="ckptd-test")
    (home / ".aws" / "config").write_text(f"""[profile ckptd-test]
region = {REGION}
endpoint_url = {s3_server.endpoint}
s3 =
    addressing_style = path
""")
    (home / ".aws" / "credentials").write_text(f"""[ckptd-test]
aws_access_key_id = {ACCESS_KEY}
aws_secret_access_key = {SECRET_KEY}
""")
    run_jobs(procs, s3_server.url(), tmp_path)


def test_ckptd_own_endpoint_wins_over_the_aws_variables(
        s3_server: SeaweedServer, user_env: Callable[..., Path]) -> None:
    user_env(AWS_ENDPOINT_URL="http://127.0.0.1:9", AWS_ACCESS_KEY_ID=ACCESS_KEY,
             AWS_SECRET_ACCESS_KEY=SECRET_KEY, CKPTD_S3_ENDPOINT_URL=s3_server.endpoint)
    url = s3_server.url()
    made = cli("--root", url, "submit", Q, "{}")
    assert made.returncode == 0, made.stderr
    assert cli("--root", url, "ls", Q, "pending").stdout.split() == [made.stdout.strip()]


def credential_process(home: Path) -> str:
    """A credential_process script (a source of refreshable credentials, as a role's)."""
    script = home / "creds.py"
    script.write_text("import json\nprint(json.dumps({'Version': 1, 'AccessKeyId': "
                      f"{ACCESS_KEY!r}, 'SecretAccessKey': {SECRET_KEY!r}, "
                      "'Expiration': '2099-01-01T00:00:00Z'}))\n")
    return f"{sys.executable} {script}"


@pytest.mark.parametrize("source", ["web-identity", "assume-role", "sso", "process"])
def test_role_sso_and_process_credentials_go_through_botocores_chain(
        s3_server: SeaweedServer, user_env: Callable[..., Path], source: str) -> None:
    """Each source the way its users set it up; the stand-in for STS or the SSO portal
    hands out the S3 server's key pair, so requests succeed only if the chain was used."""
    with StsStub(ACCESS_KEY, SECRET_KEY) as sts:
        home = user_env(AWS_ENDPOINT_URL_STS=sts.endpoint, AWS_ENDPOINT_URL_SSO=sts.endpoint)
        config = home / ".aws" / "config"
        if source == "web-identity":  # a Kubernetes service account's variables
            (home / "token").write_text("a-web-identity-token")
            user_env(AWS_ROLE_ARN=ROLE, AWS_WEB_IDENTITY_TOKEN_FILE=str(home / "token"),
                     AWS_DEFAULT_REGION=REGION, AWS_ENDPOINT_URL_S3=s3_server.endpoint)
        elif source == "assume-role":
            (home / ".aws" / "credentials").write_text(
                "[base]\naws_access_key_id = AKIDBASE\naws_secret_access_key = base\n")
            config.write_text(f"[profile role]\nrole_arn = {ROLE}\nsource_profile = base\n"
                              f"region = {REGION}\nendpoint_url = {s3_server.endpoint}\n")
            user_env(AWS_PROFILE="role")
        elif source == "sso":  # after `aws sso login`: a cached token
            config.write_text(f"[profile dev]\nsso_session = corp\nsso_account_id = "
                              f"123456789012\nsso_role_name = ckptd\nregion = {REGION}\n"
                              f"endpoint_url = {s3_server.endpoint}\n\n[sso-session corp]\n"
                              f"sso_region = {REGION}\nsso_start_url = "
                              "https://example.awsapps.com/start\n")
            cache = home / ".aws" / "sso" / "cache"
            cache.mkdir(parents=True)
            (cache / f"{hashlib.sha1(b'corp').hexdigest()}.json").write_text(json.dumps({
                "startUrl": "https://example.awsapps.com/start", "region": REGION,
                "accessToken": "an-sso-token", "expiresAt": "2099-01-01T00:00:00Z"}))
            user_env(AWS_PROFILE="dev")
        else:
            config.write_text(f"[default]\ncredential_process = {credential_process(home)}\n"
                              f"region = {REGION}\nendpoint_url = {s3_server.endpoint}\n")
        url = s3_server.url()
        made = cli("--root", url, "submit", Q, "{}")
        assert made.returncode == 0, made.stderr
        assert cli("--root", url, "ls", Q, "pending").stdout.split() == [made.stdout.strip()]
        actions = {call["Action"] for call in sts.calls}
    expected = {"web-identity": {"AssumeRoleWithWebIdentity"}, "assume-role": {"AssumeRole"},
                "sso": {"GetRoleCredentials"}, "process": set()}
    assert actions == expected[source]


@pytest.mark.slow
def test_a_daemon_on_aws_variables_alone_serves_from_the_first_request(
        procs: Processes, s3_server: SeaweedServer, user_env: Callable[..., Path]) -> None:
    """The daemon of the first-hour report: started with only the AWS variables, it answers
    the first submit (no 'has no leader yet' while it cannot reach the bucket)."""
    user_env(AWS_ENDPOINT_URL=s3_server.endpoint, AWS_ACCESS_KEY_ID=ACCESS_KEY,
             AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_DEFAULT_REGION=REGION)
    daemon = procs.daemon(root=s3_server.url(), **FAST)
    made = cli("--connect", daemon.control, "submit", Q, "{}")
    assert made.returncode == 0, made.stderr
    assert "HTTP error" not in daemon.log()
