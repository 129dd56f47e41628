"""A stand-in for AWS STS and the SSO portal on 127.0.0.1, for the tests of role credentials.

AWS STS and IAM Identity Center cannot run here. botocore's credential chain (which ckptd
uses for roles) asks them for temporary credentials: STS's ``AssumeRoleWithWebIdentity`` (a
Kubernetes service account: ``AWS_ROLE_ARN`` + ``AWS_WEB_IDENTITY_TOKEN_FILE``) and
``AssumeRole`` (a profile with ``role_arn`` and ``source_profile``), and the SSO portal's
``GetRoleCredentials`` (a profile with ``sso_session``, after ``aws sso login``). This
server answers all three the way AWS does, with the given key pair (the S3 server's test
identity, which issues no session tokens: the token is empty), and records every call, so
a test can tell that the chain went through it (``AWS_ENDPOINT_URL_STS`` and
``AWS_ENDPOINT_URL_SSO`` point botocore here).
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ANSWER = """<{action}Response xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <{action}Result>
    <Credentials>
      <AccessKeyId>{key}</AccessKeyId>
      <SecretAccessKey>{secret}</SecretAccessKey>
      <SessionToken></SessionToken>
      <Expiration>{expires}</Expiration>
    </Credentials>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/ckptd/test</Arn>
      <AssumedRoleId>AROAEXAMPLE:test</AssumedRoleId>
    </AssumedRoleUser>
  </{action}Result>
  <ResponseMetadata><RequestId>ckptd-test</RequestId></ResponseMetadata>
</{action}Response>"""


class StsStub:
    """Answers STS's AssumeRole and AssumeRoleWithWebIdentity with one key pair."""

    def __init__(self, key: str, secret: str, expires: str = "2099-01-01T00:00:00Z") -> None:
        self.calls: list[dict[str, str]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                stub.calls.append(form)
                action = form.get("Action", "")
                if action not in ("AssumeRole", "AssumeRoleWithWebIdentity"):
                    self.send_response(400)
                    self.end_headers()
                    return
                body = ANSWER.format(action=action, key=key, secret=secret,
                                     expires=expires).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - the SSO portal's GetRoleCredentials
                query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
                stub.calls.append({"Action": "GetRoleCredentials", **query,
                                   "token": self.headers.get("x-amz-sso_bearer_token", "")})
                body = json.dumps({"roleCredentials": {
                    "accessKeyId": key, "secretAccessKey": secret, "sessionToken": "",
                    "expiration": 4070908800000}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> StsStub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
