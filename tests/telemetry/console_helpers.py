"""Helpers of the console tests: a daemon with a users file, raw HTTP requests with any
Host or Origin, a logged-in session, the audit log."""

from __future__ import annotations

import http.client
import json
import os
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ckptd.daemon.telemetry.console_auth import set_user
from tests.procs import DaemonProcess, Processes, free_port

OPERATOR = ("alice", "alice-password")
READER = ("bob", "bob-password")


def console_daemon(procs: Processes, tmp_path: Path, *, actions: bool = True,
                   **settings: Any) -> tuple[DaemonProcess, int]:
    """A daemon serving the console on a free port, with an operator and a read-only user."""
    users = tmp_path / "console-users"
    if not users.exists():
        set_user(str(users), OPERATOR[0], "operator", OPERATOR[1])
        set_user(str(users), READER[0], "read-only", READER[1])
    port = free_port()
    daemon = procs.daemon(metrics_port=port, console_users=str(users),
                          console_actions="true" if actions else "false", **settings)
    return daemon, port


@dataclass
class Answer:
    """One HTTP answer."""

    status: int
    headers: dict[str, str]
    body: str

    def header(self, name: str) -> str:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), "")


@dataclass
class Browser:
    """A cookie jar speaking raw HTTP to the console (any Host, Origin or body)."""

    port: int
    cookies: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, path: str, form: dict[str, str] | None = None,
                headers: dict[str, str] | None = None, body: bytes | None = None) -> Answer:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        sent = {"Host": f"127.0.0.1:{self.port}", **(headers or {})}
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        text = response.read().decode(errors="replace")
        for key, value in response.getheaders():
            if key.lower() == "set-cookie":
                name, _, rest = value.partition("=")
                self.cookies[name] = rest.split(";", 1)[0]
        conn.close()
        return Answer(response.status, dict(response.getheaders()), text)

    def csrf(self, path: str = "/login") -> str:
        """The CSRF token the forms of ``path`` carry for this browser."""
        page = self.request("GET", path).body
        found = re.search(r'name="csrf" value="([^"]+)"', page)
        if not found and path != "/login":  # no form on that page for a visitor
            return self.csrf("/login")
        assert found, f"no CSRF token on {path}"
        return found.group(1)

    def log_in(self, user: tuple[str, str]) -> Answer:
        token = self.csrf("/login")
        return self.request("POST", "/login", {"user": user[0], "password": user[1],
                                               "csrf": token})

    def act(self, form: dict[str, str], path: str = "/action", csrf: bool = True) -> Answer:
        fields = dict(form)
        if csrf:
            fields["csrf"] = self.csrf("/")
        return self.request("POST", path, fields)


def audit_records(root: str) -> list[dict[str, Any]]:
    """Every record of the audit log of a local root, oldest first."""
    folder = os.path.join(root, ".ckptd", "audit")
    records = []
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    for name in names:
        with open(os.path.join(folder, name)) as handle:
            records += [json.loads(line) for line in handle if line.strip()]
    return records
