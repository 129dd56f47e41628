"""Shared helpers of the telemetry tests: scraping /metrics, running the CLI, job files."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.procs import REPO, base_env

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def fetch(port: int, path: str = "/", method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """One HTTP request to 127.0.0.1:port; returns status, headers and body (errors too)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def scrape(port: int) -> tuple[Samples, dict[str, str]]:
    """Every sample of /metrics by (name, labels), and each family's HELP text."""
    status, _, body = fetch(port, "/metrics")
    assert status == 200
    samples: Samples = {}
    helps: dict[str, str] = {}
    for family in text_string_to_metric_families(body.decode()):
        helps[family.name] = family.documentation
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples, helps


def value(samples: Samples, name: str, **labels: str) -> float:
    """The value of one sample (KeyError naming it when absent)."""
    key = (name, frozenset(labels.items()))
    if key not in samples:
        raise KeyError(f"no sample {name}{labels}")
    return samples[key]


def ckptd(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the ckptd CLI in a child process."""
    return subprocess.run([sys.executable, "-m", "ckptd", *args], capture_output=True,
                          text=True, env=base_env(), cwd=REPO, timeout=timeout)


def artifacts_dir() -> str:
    """test-artifacts/ at the top of the repository (gitignored), created when missing."""
    path = os.path.join(REPO, "test-artifacts")
    os.makedirs(path, exist_ok=True)
    return path
