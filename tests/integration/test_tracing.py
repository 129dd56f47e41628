"""OpenTelemetry traces with real daemons and workers (the ``otel`` extra): one trace holds
the submitting span, the daemon's spans and the worker's span; a retry is a new trace that
links to the first. Without tracing (the default) nothing of OpenTelemetry is loaded, and
ckptd runs where it is not installed at all."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ckptd import Client
from tests.integration.worker_helpers import wait_for_workers
from tests.procs import REPO, Processes, base_env

Q = "traced"


@pytest.fixture(scope="module")
def exporter() -> Any:
    """The test process's tracer provider, with an in-memory exporter (set once: OpenTelemetry
    allows one global provider per process)."""
    pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed "
                        "(pip install .[otel]); make test installs it")
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    trace.set_tracer_provider(provider)
    return memory


def _file_spans(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() \
        else []


def _hex(number: int, digits: int = 16) -> str:
    """An id as the JSON of a span writes it (trace ids: 32 digits, span ids: 16)."""
    return f"0x{number:0{digits}x}"


def test_one_trace_from_the_request_to_the_worker_and_a_retry_links_to_it(
        procs: Processes, tmp_path: Path, exporter: Any) -> None:
    from opentelemetry import trace

    spans_file = tmp_path / "spans.jsonl"
    traced = {"CKPTD_TRACING": f"file:{spans_file}"}
    daemon = procs.daemon(backoff_base="0.05s", env=traced)
    procs.worker(daemon, Q, "extras_handlers:outcome", env=traced)
    wait_for_workers(daemon)
    tracer = trace.get_tracer("the-web-app")
    with Client(daemon.control, timeout=10, tracing="on") as client:
        with tracer.start_as_current_span("POST /orders") as request:
            ok = client.submit(Q, {"mode": "ok"})
            flaky = client.submit(Q, {"mode": "flaky"})
        client.wait_many(Q, [ok, flaky], timeout=60)
    procs.stop_all()  # the daemon's and worker's last spans are written by then
    mine = exporter.get_finished_spans()
    trace_id = _hex(request.get_span_context().trace_id, 32)
    creates = {s.attributes["messaging.message.id"]: s for s in mine
               if s.name == f"create {Q}"}
    assert set(creates) == {ok, flaky}
    assert all(s.parent.span_id == request.get_span_context().span_id
               for s in creates.values())
    theirs = _file_spans(spans_file)

    def spans(name: str, job_id: str, attempt: int) -> list[dict[str, Any]]:
        return [s for s in theirs if s["name"] == f"{name} {Q}"
                and s["attributes"]["messaging.message.id"] == job_id
                and s["attributes"]["ckptd.attempt"] == attempt]

    for job_id in (ok, flaky):  # the first attempt: in the request's trace, step by step
        create = _hex(creates[job_id].context.span_id)
        (dispatch,) = spans("dispatch", job_id, 1)
        (process,) = spans("process", job_id, 1)
        (settle,) = spans("settle", job_id, 1)
        assert {dispatch["context"]["trace_id"], process["context"]["trace_id"],
                settle["context"]["trace_id"]} == {trace_id}
        assert dispatch["parent_id"] == create
        assert process["parent_id"] == dispatch["context"]["span_id"]
        assert settle["parent_id"] == dispatch["context"]["span_id"]
        assert process["kind"] == "SpanKind.CONSUMER"
        assert [e["name"] for e in settle["events"]] == ["moved"]
    (moved,) = spans("settle", flaky, 1)[0]["events"]
    assert moved["attributes"]["ckptd.to"] == "pending"  # the retry
    assert spans("process", flaky, 1)[0]["status"]["status_code"] == "ERROR"
    # The retry: a new trace, linked to the job's creation context.
    (dispatch2,) = spans("dispatch", flaky, 2)
    (process2,) = spans("process", flaky, 2)
    assert dispatch2["context"]["trace_id"] != trace_id and dispatch2["parent_id"] is None
    assert process2["context"]["trace_id"] == dispatch2["context"]["trace_id"]
    assert [link["context"]["span_id"] for link in dispatch2["links"]] == \
        [_hex(creates[flaky].context.span_id)]
    assert [link["context"]["trace_id"] for link in process2["links"]] == [trace_id]
    assert spans("settle", flaky, 2)[0]["events"][0]["attributes"]["ckptd.to"] == "done"


def test_without_tracing_no_opentelemetry_module_is_loaded(procs: Processes) -> None:
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, ckptd\nfrom ckptd import Client, Worker, Job\n"
         "from ckptd.cli.main import cli\nprint(sorted(m for m in sys.modules "
         "if m.startswith('opentelemetry')))"],
        capture_output=True, text=True, env=base_env(), cwd=REPO, timeout=60)
    assert probe.stdout.strip() == "[]", probe.stderr
    daemon = procs.daemon()
    procs.worker(daemon, Q, "extras_handlers:otel_modules", extra=["--pool", "process"])
    procs.worker(daemon, Q, "extras_handlers:otel_modules")
    wait_for_workers(daemon, 2)
    with daemon.client() as client:
        ids = client.submit_many(Q, [{}] * 6)
        client.wait_many(Q, ids, timeout=60)
        assert [client.result(Q, i) for i in ids] == [[]] * 6


BLOCKER = '''
import importlib.abc, sys
class _NoOtel(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "opentelemetry":
            raise ImportError("opentelemetry is not installed here (test)")
        return None
sys.meta_path.insert(0, _NoOtel())
'''


def test_ckptd_runs_where_opentelemetry_is_not_installed(procs: Processes,
                                                         tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = {"PYTHONPATH": f"{site}:{base_env()['PYTHONPATH']}"}
    daemon = procs.daemon(env=env)
    procs.worker(daemon, Q, "extras_handlers:outcome", env=env)
    wait_for_workers(daemon)
    submitted = subprocess.run(
        [sys.executable, "-m", "ckptd", "--connect", daemon.control, "submit", Q, "{}"],
        capture_output=True, text=True, env=base_env(**env), cwd=REPO, timeout=60)
    assert submitted.returncode == 0, submitted.stderr
    with daemon.client() as client:
        assert client.wait(Q, submitted.stdout.strip(), timeout=60) == "done"
    refused = subprocess.run(
        [sys.executable, "-m", "ckptd", "--connect", daemon.control, "submit", Q, "{}"],
        capture_output=True, text=True, env=base_env(**env, CKPTD_TRACING="on"), cwd=REPO,
        timeout=60)
    assert refused.returncode != 0
    assert "pip install" in refused.stderr and "otel" in refused.stderr
