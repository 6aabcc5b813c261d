"""Helpers of the instrumentation tests: an OTLP receiver and the scenario runner.

Tests of ``instrument()`` run it in a subprocess (``agent_scenarios.py``), since it sets the process's global
TracerProvider and patches openai; the subprocess exports to an :class:`OtlpReceiver` served on a free port.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from otel_lightning.collector.background import BackgroundServer

SCENARIOS = Path(__file__).with_name("agent_scenarios.py")
REJECT_SPAN = "reject-me"
"""A request holding a span of this name is answered 400 (a permanent export failure)."""


@dataclass
class ReceivedSpan:
    name: str
    span_id: str
    attributes: dict[str, Any]
    resource: dict[str, Any]


@dataclass
class OtlpReceiver:
    """Records every OTLP traces body it accepts; answers 200 with an empty Export*ServiceResponse."""

    url: str = ""
    trace_bodies: list[bytes] = field(default_factory=list)
    log_requests: int = 0
    rejected: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def spans(self) -> list[ReceivedSpan]:
        found = []
        with self.lock:
            bodies = list(self.trace_bodies)
        for body in bodies:
            for resource_spans in ExportTraceServiceRequest.FromString(body).resource_spans:
                resource = _attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        found.append(
                            ReceivedSpan(
                                span.name, span.span_id.hex(), _attributes(span.attributes), resource
                            )
                        )
        return found


def _attributes(key_values: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in key_values}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


@contextmanager
def serve_receiver() -> Iterator[OtlpReceiver]:
    """An :class:`OtlpReceiver` on a free loopback port, for the duration of the block."""
    state = OtlpReceiver()

    async def traces(request: Request) -> Response:
        body = await request.body()
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        names = {
            span.name
            for rs in ExportTraceServiceRequest.FromString(body).resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        }
        with state.lock:
            if REJECT_SPAN in names:
                state.rejected += 1
                return Response(status_code=400)
            state.trace_bodies.append(body)
        return Response(ExportTraceServiceResponse().SerializeToString(), media_type="application/x-protobuf")

    async def logs(request: Request) -> Response:
        await request.body()
        with state.lock:
            state.log_requests += 1
        return Response(ExportLogsServiceResponse().SerializeToString(), media_type="application/x-protobuf")

    app = Starlette(
        routes=[Route("/v1/traces", traces, methods=["POST"]), Route("/v1/logs", logs, methods=["POST"])]
    )
    with BackgroundServer(app) as server:
        state.url = server.url
        yield state


def run_scenario(
    name: str, receiver_url: str, env: dict[str, str] | None = None, timeout_s: float = 120.0
) -> dict[str, Any]:
    """Run one scenario of ``agent_scenarios.py`` in a fresh interpreter; its JSON report."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACELOOP_"))}
    completed = subprocess.run(
        [sys.executable, str(SCENARIOS), name, receiver_url],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**clean, **(env or {})},
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return dict(json.loads(completed.stdout.strip().splitlines()[-1]))
