"""The per-host agent deployment, with real processes: workers send their spans to rotel
(``deploy/rotel_agent.py``), which forwards them to an ``otel-lightning serve`` process; the workers' REST
calls go to the server directly. The server is stopped for 10 s while rollouts run, then restarted on the same
database and port: every span still arrives, once."""

from __future__ import annotations

import gzip
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from deploy.rotel_agent import RotelAgent, RotelOptions
from otel_lightning import connect
from otel_lightning.resources import LLMEndpoint, PromptTemplate, SamplingParams
from otel_lightning.testing import ScriptedLLM
from otel_lightning.types import AttemptStatus, RolloutStatus
from tests.agents.classify import scripted_handler
from tests.conftest import REPO, ServerProcess, child_env, free_port
from tests.deploy.deploy_support import PROMPT, require_rotel, start_workers, stop_workers

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

SLOW, FAST = 8, 32
"""Rollouts still running when the server stops (one per worker slot), and rollouts queued behind them."""
OUTAGE_S = 10.0


@pytest.fixture
def rotel_log(tmp_path: Path) -> Path:
    """Where rotel logs; kept with the test's tmp_path (pytest keeps the last three runs' folders)."""
    return tmp_path / "rotel.log"


def wait_running(server: ServerProcess, rollout_ids: list[str], timeout_s: float = 30.0) -> None:
    with connect(server.url) as lightning:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(lightning.rollout(r).status is RolloutStatus.RUNNING for r in rollout_ids):
                return
            time.sleep(0.05)
    raise AssertionError("the slow rollouts were not all claimed")


def test_deploy_rotel_holds_spans_while_the_server_restarts(
    server_process: ServerProcess, tmp_path: Path, rotel_log: Path
) -> None:
    require_rotel()
    options = RotelOptions(listen_port=free_port(), server_url=server_process.url, retry_max_backoff="1s")
    with (
        ScriptedLLM(scripted_handler) as llm,
        rotel_log.open("wb") as log,
        RotelAgent(options, log) as agent,
    ):
        workers = start_workers(server_process.url, agent.traces_endpoint, 2, tmp_path)
        try:
            with connect(server_process.url) as lightning:
                endpoint = LLMEndpoint(base_url=llm.base_url, model="scripted")
                lightning.publish(
                    {"prompt": PromptTemplate(PROMPT), "llm": endpoint, "sampling": SamplingParams(0.0)}
                )
                words = ["good day", "bad day", "good food", "awful food"]
                inputs = [
                    {"text": f"{words[i % 4]} #{i}", "label": "positive" if i % 2 == 0 else "negative"}
                    for i in range(SLOW + FAST)
                ]
                # The slow ones are queued first, so they fill every worker slot (claims are FIFO).
                slow = lightning.enqueue([{**t, "delay_s": 3.0} for t in inputs[:SLOW]])
                fast = lightning.enqueue([{**t, "delay_s": 0.05} for t in inputs[SLOW:]])
            ids = [r.rollout_id for r in slow + fast]
            wait_running(server_process, ids[:SLOW])

            server_process.stop()
            down_ns = time.time_ns()
            time.sleep(OUTAGE_S)
            up_ns = time.time_ns()
            server_process.start()

            with connect(server_process.url) as lightning:
                final = lightning.wait(ids, timeout_s=45, complete=True)
                assert {r.status for r in final} == {RolloutStatus.SUCCEEDED}
                assert {r.reward for r in final} == {1.0}
                during_outage = 0
                for rollout_id in ids:
                    attempts = lightning.attempts(rollout_id)
                    assert [a.status for a in attempts] == [AttemptStatus.SUCCEEDED]
                    spans = lightning.spans(rollout_id, attempts[0].attempt_id)
                    # The rollout span, the openai.chat span and the reward span: all of them, once.
                    assert attempts[0].span_count == len(spans) == 3
                    assert len({(s.trace_id, s.span_id) for s in spans}) == 3
                    assert {s.attempt_id for s in spans} == {attempts[0].attempt_id}
                    during_outage += sum(down_ns < s.end_ns < up_ns for s in spans)
        finally:
            codes = stop_workers(workers)
    assert codes == [0, 0]
    # The slow rollouts ended while the server was down: rotel held their spans and delivered them later.
    assert during_outage >= SLOW * 3
    text = rotel_log.read_text(errors="replace")
    assert "will retry" in text
    assert "dropping data" not in text


class _Sink(BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint that refuses the first two requests with 503, then accepts; records each."""

    protocol_version = "HTTP/1.1"
    received: list[tuple[int, bytes, str | None]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        status = 503 if len(self.received) < 2 else 200
        self.received.append((status, body, self.headers.get("authorization")))
        self.send_response(status)
        if status == 503:
            self.send_header("Retry-After", "1")
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_deploy_rotel_cli_retries_503_until_accepted(rotel_log: Path) -> None:
    """``python deploy/rotel_agent.py --listen PORT --server URL`` forwards a span with the server's API
    token, and retries 503s until it is accepted."""
    require_rotel()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    _Sink.received = []
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    port = free_port()
    command = [sys.executable, "deploy/rotel_agent.py", "--listen", str(port)]
    command += ["--server", f"http://127.0.0.1:{sink.server_address[1]}", "--retry-max-backoff", "500ms"]
    with rotel_log.open("wb") as log:
        env = child_env(OTEL_LIGHTNING_API_TOKEN="t0ken")  # the script's default for --api-token
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        provider = TracerProvider()
        provider.add_span_processor(
            SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces", timeout=5))
        )
        while time.monotonic() < deadline and "listening" not in rotel_log.read_text(errors="replace"):
            time.sleep(0.05)
        with provider.get_tracer("deploy-test").start_as_current_span("through rotel") as span:
            span_id = span.get_span_context().span_id.to_bytes(8, "big")
        while time.monotonic() < deadline and len(_Sink.received) < 3:
            time.sleep(0.05)
        provider.shutdown()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(15)
        sink.shutdown()
    assert [status for status, _, _ in _Sink.received] == [503, 503, 200]
    assert {auth for _, _, auth in _Sink.received} == {"Bearer t0ken"}
    for _, body, _ in _Sink.received:  # the same batch each time
        request = ExportTraceServiceRequest.FromString(body)
        assert [s.span_id for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans] == [
            span_id
        ]
    assert code == 0
