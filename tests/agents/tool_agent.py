"""An agent that asks the LLM, then calls a tool service in another process over HTTP (propagating the trace
context and baggage), then asks the LLM again with the tool's answer."""

from __future__ import annotations

import os
from typing import Any

import httpx
import openai
from opentelemetry import propagate

from otel_lightning import ResourceVersion
from otel_lightning.resources import LLMEndpoint


def agent(task: dict[str, Any], resources: ResourceVersion) -> float:
    endpoint = resources["llm"]
    assert isinstance(endpoint, LLMEndpoint)
    client = openai.OpenAI(base_url=endpoint.base_url, api_key="unused")
    first = client.chat.completions.create(
        model=endpoint.model,
        messages=[{"role": "user", "content": f"Which order is this about? {task['text']}"}],
    )
    order = (first.choices[0].message.content or "").strip()
    headers: dict[str, str] = {}
    propagate.inject(headers)  # traceparent + baggage (the rollout identity)
    status = httpx.post(f"{os.environ['TOOL_URL']}/lookup", json={"order": order}, headers=headers).json()[
        "status"
    ]
    final = client.chat.completions.create(
        model=endpoint.model,
        messages=[{"role": "user", "content": f"Order {order} is {status}. Tell the customer."}],
    )
    return 1.0 if status in (final.choices[0].message.content or "") else 0.0
