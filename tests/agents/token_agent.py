"""An agent that asks for logprobs; the scripted server also returns vLLM-style token ids."""

from __future__ import annotations

from typing import Any

import openai

from otel_lightning import ResourceVersion
from otel_lightning.resources import LLMEndpoint
from otel_lightning.testing import ScriptedReply


def agent(task: dict[str, Any], resources: ResourceVersion) -> float:
    endpoint = resources["llm"]
    assert isinstance(endpoint, LLMEndpoint)
    client = openai.OpenAI(base_url=endpoint.base_url, api_key="unused")
    client.chat.completions.create(
        model=endpoint.model, messages=[{"role": "user", "content": task["text"]}], logprobs=True
    )
    return 1.0


def reply_for(text: str) -> ScriptedReply:
    """Token ids and logprobs derived from the prompt, so each rollout's are different and known."""
    n = len(text)
    return ScriptedReply(
        content="ok fine",
        prompt_token_ids=tuple(range(n, n + 5)),
        completion_token_ids=(n * 10, n * 10 + 1),
        logprobs=(-0.5 / n, -0.25 / n),
    )
