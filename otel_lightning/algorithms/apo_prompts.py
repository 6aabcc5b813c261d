"""The optimizer LLM's side of APO: the critique and edit prompts, the call, and the placeholder check.

The prompts are :class:`string.Template` texts (``$name`` fields), so the braces of the prompt template being
optimised never collide with them. Fields: ``$prompt`` (the current template), ``$examples`` (the failures),
``$critique``, ``$placeholders`` (the names the template must keep, as ``{name}``).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from string import Template
from typing import Any

from otel_lightning.algorithms.feedback import Example, input_text, prompt_text
from otel_lightning.exceptions import ResourceError
from otel_lightning.resources import LLMEndpoint, PromptTemplate

logger = logging.getLogger(__name__)

CRITIQUE_PROMPT = """You are improving the prompt template of an AI agent.

The current template:
<prompt>
$prompt
</prompt>

With it, the agent did badly on these examples:
$examples

Explain briefly why the template led to these results, and what should change in it."""

EDIT_PROMPT = """You are improving the prompt template of an AI agent.

The current template:
<prompt>
$prompt
</prompt>

A critique of it:
$critique

Write an improved template. Keep each of these placeholders exactly once and as written: $placeholders.
Add no other placeholder; write a literal brace as {{ or }}.
Answer with the new template only, between <prompt> and </prompt>."""

_PROMPT_TAG = re.compile(r"<prompt>\n?(.*?)\n?</prompt>", re.DOTALL)


def format_examples(found: Sequence[Example], input_field: str | None, max_chars: int = 2000) -> str:
    """The failures as ``<example>`` blocks: task, the prompt really sent, the output, the reward."""
    blocks = []
    for example in found:
        lines = [f"Task input: {input_text(example.task_input, input_field)}"]
        call = example.last_call
        if call is not None:
            lines.append(f"Prompt sent:\n{_clip(prompt_text(call), max_chars)}")
            lines.append(f"Model output:\n{_clip(call.completion, max_chars)}")
        if example.failed:
            error = example.rollout.error or example.rollout.status.value
            lines.append(f"The rollout failed: {_clip(error, max_chars)}")
        lines.append(f"Reward: {example.reward:g}")
        blocks.append("<example>\n" + "\n".join(lines) + "\n</example>")
    return "\n".join(blocks)


def critique_request(template: str, prompt: PromptTemplate, examples: str) -> str:
    return Template(template).safe_substitute(prompt=prompt.template, examples=examples)


def edit_request(template: str, prompt: PromptTemplate, critique: str) -> str:
    names = ", ".join(f"{{{name}}}" for name in sorted(prompt.placeholders)) or "(none)"
    return Template(template).safe_substitute(prompt=prompt.template, critique=critique, placeholders=names)


def extract_prompt(reply: str) -> str:
    """The new template from the optimizer's reply: the last ``<prompt>`` block, else the whole reply."""
    found = _PROMPT_TAG.findall(reply)
    return (found[-1] if found else reply).strip()


def check_placeholders(text: str, parent: PromptTemplate) -> str | None:
    """Why an edited template is unusable (``None`` if it keeps exactly the parent's placeholders)."""
    try:
        names = PromptTemplate(text).placeholders
    except ResourceError as exc:
        return str(exc)
    dropped, added = parent.placeholders - names, names - parent.placeholders
    if dropped or added:
        return f"dropped placeholders {sorted(dropped)}, added {sorted(added)}"
    if not text.strip():
        return "the template is empty"
    return None


class OptimizerLLM:
    """Calls an OpenAI-compatible endpoint with the openai client (imported when first used)."""

    def __init__(self, endpoint: LLMEndpoint, temperature: float | None, max_tokens: int | None) -> None:
        self.endpoint = endpoint
        self.temperature = temperature
        self.max_tokens = max_tokens
        self._client: Any = None

    def ask(self, text: str, seed: int | None = None) -> str:
        if self._client is None:
            try:
                import openai
            except ImportError:
                raise ImportError("APO calls its optimizer LLM with openai: pip install openai") from None
            key = os.environ.get(self.endpoint.api_key_env) if self.endpoint.api_key_env else None
            self._client = openai.OpenAI(base_url=self.endpoint.base_url, api_key=key or "unused")
        options: dict[str, Any] = {}
        if self.temperature is not None:
            options["temperature"] = self.temperature
        if self.max_tokens is not None:
            options["max_tokens"] = self.max_tokens
        if seed is not None:
            options["seed"] = seed
        reply = self._client.chat.completions.create(
            model=self.endpoint.model, messages=[{"role": "user", "content": text}], **options
        )
        return str(reply.choices[0].message.content or "")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + " [...]"
