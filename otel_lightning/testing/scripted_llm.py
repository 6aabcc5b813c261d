"""A scripted OpenAI-compatible HTTP server for deterministic tests (the idea of DSPy's ``DummyLM``).

A handler function receives each request's JSON body and returns the reply: a string, or a
:class:`ScriptedReply` with tool calls, token ids and logprobs. The server speaks ``/v1/chat/completions``
(plain and streamed), ``/v1/completions`` and ``/v1/models``, so the real ``openai`` client and its
instrumentations run unchanged against it::

    with ScriptedLLM(lambda request: "positive") as llm:
        client = openai.OpenAI(base_url=llm.base_url, api_key="unused")
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from otel_lightning.collector.background import BackgroundServer


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call the scripted model makes."""

    id: str
    name: str
    arguments: str
    """JSON-encoded arguments, as the OpenAI API sends them."""


@dataclass(frozen=True, slots=True)
class ScriptedReply:
    """A scripted model's answer to one request."""

    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    prompt_token_ids: tuple[int, ...] | None = None
    """Returned vLLM-style as ``prompt_token_ids`` on the response."""
    completion_token_ids: tuple[int, ...] | None = None
    """Returned vLLM-style as ``token_ids`` on the choice."""
    logprobs: tuple[float, ...] | None = None
    """Per-token log-probabilities, returned OpenAI-style when the request asks for ``logprobs``."""
    finish_reason: str | None = None
    """Defaults to ``tool_calls`` when there are tool calls, else ``stop``."""


Handler = Callable[[dict[str, Any]], "str | ScriptedReply"]


def count_tokens(text: str) -> int:
    """The scripted model's token count: whitespace-separated words."""
    return len(text.split())


class ScriptedLLM:
    """An OpenAI-compatible server answering from a handler; records every request it got."""

    def __init__(self, handler: Handler, model: str = "scripted-model") -> None:
        self.handler = handler
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/completions", self._completions, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )
        self._server = BackgroundServer(app)

    @property
    def base_url(self) -> str:
        """The ``base_url`` to give the openai client (ends in ``/v1``)."""
        return f"{self._server.url}/v1"

    def start(self) -> ScriptedLLM:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> ScriptedLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _answer(self, body: dict[str, Any]) -> ScriptedReply:
        with self._lock:
            self.requests.append(body)
        reply = self.handler(body)
        return ScriptedReply(content=reply) if isinstance(reply, str) else reply

    async def _models(self, request: Request) -> Response:
        return JSONResponse(
            {
                "object": "list",
                "data": [{"id": self.model, "object": "model", "created": 0, "owned_by": "scripted"}],
            }
        )

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        reply = self._answer(body)
        response_id = f"chatcmpl-{next(self._ids)}"
        prompt_text = " ".join(str(m.get("content") or "") for m in body.get("messages", []))
        usage = {
            "prompt_tokens": count_tokens(prompt_text),
            "completion_tokens": count_tokens(reply.content or ""),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                self._stream(response_id, reply, finish, usage if include_usage else None),
                media_type="text/event-stream",
            )
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.tool_calls:
            message["tool_calls"] = [
                {"id": t.id, "type": "function", "function": {"name": t.name, "arguments": t.arguments}}
                for t in reply.tool_calls
            ]
        choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": finish}
        if reply.logprobs is not None and body.get("logprobs"):
            words = (reply.content or "").split()
            choice["logprobs"] = {
                "content": [
                    {
                        "token": words[i] if i < len(words) else "",
                        "logprob": lp,
                        "bytes": None,
                        "top_logprobs": [],
                    }
                    for i, lp in enumerate(reply.logprobs)
                ]
            }
        if reply.completion_token_ids is not None:
            choice["token_ids"] = list(reply.completion_token_ids)
        payload: dict[str, Any] = {
            "id": response_id,
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model") or self.model,
            "choices": [choice],
            "usage": usage,
        }
        if reply.prompt_token_ids is not None:
            payload["prompt_token_ids"] = list(reply.prompt_token_ids)
        return JSONResponse(payload)

    async def _stream(
        self, response_id: str, reply: ScriptedReply, finish: str, usage: dict[str, int] | None
    ) -> AsyncIterator[bytes]:
        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            data = {
                "id": response_id,
                "object": "chat.completion.chunk",
                "created": 0,
                "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            }
            return f"data: {json.dumps(data)}\n\n".encode()

        yield chunk({"role": "assistant", "content": ""})
        words = (reply.content or "").split(" ")
        for i, word in enumerate(words):
            if reply.content:
                yield chunk({"content": word if i == 0 else " " + word})
        for i, call in enumerate(reply.tool_calls):
            yield chunk(
                {
                    "tool_calls": [
                        {
                            "index": i,
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": call.arguments},
                        }
                    ]
                }
            )
        yield chunk({}, finish)
        if usage is not None:
            data = {
                "id": response_id,
                "object": "chat.completion.chunk",
                "created": 0,
                "model": self.model,
                "choices": [],
                "usage": usage,
            }
            yield f"data: {json.dumps(data)}\n\n".encode()
        yield b"data: [DONE]\n\n"

    async def _completions(self, request: Request) -> Response:
        body = await request.json()
        reply = self._answer(body)
        text = reply.content or ""
        usage = {
            "prompt_tokens": count_tokens(str(body.get("prompt", ""))),
            "completion_tokens": count_tokens(text),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return JSONResponse(
            {
                "id": f"cmpl-{next(self._ids)}",
                "object": "text_completion",
                "created": 0,
                "model": body.get("model") or self.model,
                "choices": [
                    {
                        "index": 0,
                        "text": text,
                        "finish_reason": reply.finish_reason or "stop",
                        "logprobs": None,
                    }
                ],
                "usage": usage,
            }
        )
