"""A tool service in its own process, instrumented with `instrument()`: the rollout it serves is read from the
W3C baggage of each request, so its spans join the calling agent's rollout.

    python -m tests.agents.tool_service PORT SERVER_URL
"""

from __future__ import annotations

import sys

import uvicorn
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from otel_lightning import instrument, semconv

ORDERS = {"A-1": "shipped", "B-2": "delayed"}


async def lookup(request: Request) -> JSONResponse:
    body = await request.json()
    # Attach the caller's context (trace parent + baggage), as an ASGI instrumentation would.
    token = otel_context.attach(propagate.extract(request.headers))
    try:
        tracer = trace.get_tracer("tool-service")
        with (
            tracer.start_as_current_span(
                "execute_tool lookup_order",
                kind=trace.SpanKind.SERVER,
                attributes={
                    semconv.GEN_AI_OPERATION_NAME: "execute_tool",
                    semconv.GEN_AI_TOOL_NAME: "lookup_order",
                },
            ),
            tracer.start_as_current_span("database query"),
        ):
            status = ORDERS.get(body["order"], "unknown")
    finally:
        otel_context.detach(token)
    return JSONResponse({"status": status})


app = Starlette(routes=[Route("/lookup", lookup, methods=["POST"])])

if __name__ == "__main__":
    port, server_url = int(sys.argv[1]), sys.argv[2]
    instrument(server_url, service_name="tool-service", instrument_openai=False, schedule_delay_ms=100)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
