"""The demo's agent: reads a support ticket and answers with its order number, through an LLM.

Everything it does is shaped by its resource version, which is what the algorithms tune:

- ``system`` (prompt template): the system message;
- ``demos`` (config, optional): ``{"demos": [{"input": ..., "output": ...}]}``, sent as earlier chat turns;
- ``prompt`` (prompt template with ``{ticket}``): the user message;
- ``sampling`` (sampling parameters);
- ``llm`` (an LLM endpoint) and ``replicas`` (config, optional): ``{"base_urls": [...]}``, several servers of
  the same model that the agent's calls are spread over.

Its reward is 1.0 when the answer holds the right order number, else 0.0.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

import openai

from otel_lightning.demo.dataset import parse_order_id
from otel_lightning.resources import LLMEndpoint, ResourceVersion, WorkflowConfig

_clients: dict[str, openai.OpenAI] = {}
_lock = threading.Lock()
_turn = itertools.count()


def _client(base_url: str) -> openai.OpenAI:
    with _lock:
        client = _clients.get(base_url)
        if client is None:
            client = _clients[base_url] = openai.OpenAI(
                base_url=base_url, api_key="unused", max_retries=2, timeout=120
            )
        return client


def _config(resources: ResourceVersion, name: str) -> dict[str, Any]:
    found = resources.resources.get(name)
    return dict(found.value) if isinstance(found, WorkflowConfig) else {}


def messages_for(task: dict[str, Any], resources: ResourceVersion) -> list[dict[str, str]]:
    """The chat messages the agent sends for ``task`` under ``resources``."""
    messages = [{"role": "system", "content": resources.prompt("system").render()}]
    for demo in _config(resources, "demos").get("demos", []):
        messages.append({"role": "user", "content": str(demo["input"])})
        messages.append({"role": "assistant", "content": str(demo["output"])})
    messages.append({"role": "user", "content": resources.prompt("prompt").render(ticket=task["ticket"])})
    return messages


def extract_order_id(task: dict[str, Any], resources: ResourceVersion) -> float:
    """Ask the LLM for the ticket's order number; 1.0 if it is right."""
    endpoint = resources["llm"]
    if not isinstance(endpoint, LLMEndpoint):
        raise TypeError("resource 'llm' must be an llm_endpoint")
    base_urls = _config(resources, "replicas").get("base_urls") or [endpoint.base_url]
    base_url = base_urls[next(_turn) % len(base_urls)]
    reply = _client(base_url).chat.completions.create(
        model=endpoint.model,
        messages=messages_for(task, resources),  # type: ignore[arg-type]
        **resources.sampling().as_openai_kwargs(),
    )
    answer = reply.choices[0].message.content or ""
    return 1.0 if parse_order_id(answer) == task["order_id"] else 0.0
