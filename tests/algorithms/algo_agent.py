"""The agent and the scripted task LLM the algorithm tests optimise.

The agent renders its ``prompt`` template (``Text: {text}\\nLabel:`` when it has none), prefixes the
``workflow`` config's steps when there is one, asks the ``llm`` endpoint with the ``sampling`` parameters
through the real openai client, and returns 1.0 when the answer is the task's label. ``{"fail": true}`` makes
it raise; ``{"sleep": s}`` makes it sleep first.

The scripted model (:func:`task_handler`) is right in known ways:

- it knows a label when the prompt asks it to read carefully, or holds a demonstration ``Output: <label>``;
  otherwise it only gets texts that literally say ``good`` or ``bad``, and answers ``unsure``;
- with a ``Steps:`` line (a workflow), it needs ``normalize`` for an upper-case text and ``verify`` for a
  text ending in ``?``;
- a temperature T > 0 flips the answer with probability min(1, T / 1.2), from an RNG seeded by the
  prompt, T and the request's seed (so the same request always gets the same answer).
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import openai

from otel_lightning import ResourceVersion
from otel_lightning.resources import LLMEndpoint, WorkflowConfig

DEFAULT_TEMPLATE = "Text: {text}\nLabel:"
POSITIVE = ("good", "great", "nice", "lovely")

_clients: dict[str, openai.OpenAI] = {}
_lock = threading.Lock()


def _client(base_url: str) -> openai.OpenAI:
    with _lock:
        if base_url not in _clients:
            _clients[base_url] = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=5)
        return _clients[base_url]


def agent(task: dict[str, Any], resources: ResourceVersion) -> float:
    if task.get("fail"):
        raise RuntimeError("this task always fails")
    if task.get("sleep"):
        time.sleep(float(task["sleep"]))
    endpoint = resources["llm"]
    assert isinstance(endpoint, LLMEndpoint)
    if "prompt" in resources.resources:
        prompt = resources.prompt("prompt").render(text=task["text"])
    else:
        prompt = DEFAULT_TEMPLATE.format(text=task["text"])
    workflow = resources.resources.get("workflow")
    if isinstance(workflow, WorkflowConfig):
        prompt = f"Steps: {','.join(workflow.value.get('steps', []))}\n{prompt}"
    messages: list[dict[str, str]] = []
    demos = resources.resources.get("demos")
    if isinstance(demos, WorkflowConfig):  # demonstrations replayed as earlier chat turns
        for demo in demos.value.get("demos", []):
            messages += [
                {"role": "user", "content": demo["input"]},
                {"role": "assistant", "content": demo["output"]},
            ]
    messages.append({"role": "user", "content": prompt})
    reply = _client(endpoint.base_url).chat.completions.create(
        model=endpoint.model,
        messages=messages,  # type: ignore[arg-type]
        **resources.sampling().as_openai_kwargs(),
    )
    answer = (reply.choices[0].message.content or "").strip()
    return 1.0 if answer == task["label"] else 0.0


def label_of(text: str) -> str:
    return "positive" if any(word in text.lower() for word in POSITIVE) else "negative"


def task_handler(request: dict[str, Any]) -> str:
    prompt = str(request["messages"][-1]["content"])
    text = prompt.rsplit("Text: ", 1)[-1].split("\n", 1)[0]
    label = label_of(text)
    if prompt.startswith("Steps:"):
        steps = set(prompt.split("\n", 1)[0][len("Steps:") :].strip().split(","))
        needs = set()
        if text.isupper():
            needs.add("normalize")
        if text.endswith("?"):
            needs.add("verify")
        answer = label if needs <= steps else "unsure"
    else:
        shown = {m.get("content") for m in request["messages"][:-1] if m.get("role") == "assistant"}
        told = (
            "carefully" in prompt.lower()
            or f"Output: {label}" in prompt.rsplit("Text: ", 1)[0]
            or label in shown
        )
        plain = "good" in text.lower() or "bad" in text.lower()
        answer = label if told or plain else "unsure"
    temperature = float(request.get("temperature") or 0.0)
    if temperature > 0 and answer == label:
        rng = random.Random(f"{prompt}|{temperature}|{request.get('seed')}")
        if rng.random() < min(1.0, temperature / 1.2):
            answer = "negative" if label == "positive" else "positive"
    return answer


EASY = ["good day", "bad day", "good {view}", "bad food", "good song", "bad song"]
HARD = [
    "great day",
    "awful day",
    "lovely food",
    "poor food",
    "nice song",
    "dull song",
    "great view",
    "grim view",
]


def tasks(texts: list[str], start: int = 0, count: int | None = None) -> list[dict[str, Any]]:
    """Task inputs with labels; ``#n`` suffixes make texts distinct."""
    count = len(texts) if count is None else count
    out = []
    for i in range(start, start + count):
        text = f"{texts[i % len(texts)]} #{i}"
        out.append({"text": text, "label": label_of(text)})
    return out


def mixed(count: int, start: int = 0) -> list[dict[str, Any]]:
    """Half easy, half hard tasks: the bare prompt gets about half of them."""
    out = []
    for i in range(start, start + count):
        texts = EASY if i % 2 == 0 else HARD
        text = f"{texts[(i // 2) % len(texts)]} #{i}"
        out.append({"text": text, "label": label_of(text)})
    return out
