"""A small sentiment-classification agent used by the end-to-end tests.

It renders the `prompt` template of its resource version, asks the `llm` endpoint through the real openai
client (instrumented by `instrument()`, which the Worker calls), records a step reward, and returns 1.0 when
the answer matches the label.
"""

from __future__ import annotations

from typing import Any

import openai

from otel_lightning import ResourceVersion, emit_reward
from otel_lightning.resources import LLMEndpoint


def classify(task: dict[str, Any], resources: ResourceVersion) -> float:
    endpoint = resources["llm"]
    assert isinstance(endpoint, LLMEndpoint)
    client = openai.OpenAI(base_url=endpoint.base_url, api_key="unused", max_retries=5)
    prompt = resources.prompt("prompt").render(text=task["text"])
    reply = client.chat.completions.create(
        model=endpoint.model,
        messages=[{"role": "user", "content": prompt}],
        **resources.sampling().as_openai_kwargs(),
    )
    answer = (reply.choices[0].message.content or "").strip()
    reward = 1.0 if answer == task["label"] else 0.0
    emit_reward(reward, "accuracy")
    return reward


async def classify_async(task: dict[str, Any], resources: ResourceVersion) -> float:
    endpoint = resources["llm"]
    assert isinstance(endpoint, LLMEndpoint)
    client = openai.AsyncOpenAI(base_url=endpoint.base_url, api_key="unused", max_retries=5)
    prompt = resources.prompt("prompt").render(text=task["text"])
    reply = await client.chat.completions.create(
        model=endpoint.model, messages=[{"role": "user", "content": prompt}]
    )
    answer = (reply.choices[0].message.content or "").strip()
    reward = 1.0 if answer == task["label"] else 0.0
    emit_reward(reward, "accuracy")
    return reward


def scripted_answer(prompt: str) -> str:
    """The scripted model's deterministic answer: correct only for a prompt that asks it to be careful."""
    text = prompt.rsplit(":", 1)[-1]
    if "carefully" not in prompt:
        return "unsure"
    return "positive" if "good" in text else "negative"


def scripted_handler(request: dict[str, Any]) -> str:
    return scripted_answer(request["messages"][-1]["content"])
