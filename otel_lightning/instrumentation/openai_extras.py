"""Token ids and logprobs onto the LLM span of the openai instrumentation (``capture_token_ids=True``).

Neither openai instrumentation records token ids or logprobs, which training from trajectories needs. We
wrap ``create`` (and ``parse``) of the chat and text completions resources with ``wrapt``, *before* the
instrumentor wraps them, so that our wrapper is the inner one: it runs while the instrumentor's span is
current, and adds the attributes to that span from the response. Traceloop's wrappers (0.62) open their
span with ``trace.use_span(span, end_on_exit=False)`` around the call, which makes it current for us; the
span is ended only after we return. We never touch the instrumentor's own objects.

Recorded on the first choice:

- ``semconv.PROMPT_TOKEN_IDS``: vLLM-style ``prompt_token_ids`` on the response (or on the choice, as
  vLLM's text completions put it);
- ``semconv.COMPLETION_TOKEN_IDS``: vLLM-style ``token_ids`` on the choice;
- ``semconv.COMPLETION_LOGPROBS``: ``choice.logprobs.content[i].logprob`` (chat) or
  ``choice.logprobs.token_logprobs`` (text completions); the request must ask for ``logprobs``.

Attributes are only written to a span that is recording and is an LLM call (``gen_ai.operation.name``), so
nothing lands on the rollout's root span when the instrumentor is missing or was installed before us.
Streaming responses are skipped: the values would have to be accumulated chunk by chunk while the caller
iterates, after our wrapper has returned. The wrapper never raises into the caller.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace

from otel_lightning import semconv

logger = logging.getLogger(__name__)

_TARGETS: tuple[tuple[str, str, bool], ...] = (
    ("openai.resources.chat.completions", "Completions.create", False),
    ("openai.resources.chat.completions", "AsyncCompletions.create", True),
    ("openai.resources.chat.completions", "Completions.parse", False),
    ("openai.resources.chat.completions", "AsyncCompletions.parse", True),
    ("openai.resources.completions", "Completions.create", False),
    ("openai.resources.completions", "AsyncCompletions.create", True),
)
"""(module, attribute path, is async) of every method we wrap; a missing one is skipped."""

_lock = threading.Lock()
_enabled = False
# Handle returned by wrapt for each target we wrapped, kept to find ourselves in the chain and unwrap.
_handles: dict[tuple[str, str], Any] = {}


def install() -> bool:
    """Wrap the openai completion methods (idempotent). Returns ``False`` when openai is not installed."""
    global _enabled
    try:
        import wrapt
    except ImportError:
        logger.warning("token id capture needs wrapt: pip install 'otel-lightning[client]'")
        return False
    # wrapt 2 proxies derive from BaseObjectProxy, no longer from ObjectProxy.
    proxy_base = getattr(wrapt, "BaseObjectProxy", wrapt.ObjectProxy)
    wrapped_before: list[str] = []
    with _lock:
        for module_name, path, is_async in _TARGETS:
            try:
                owner, attribute = _resolve(module_name, path)
            except ImportError:
                logger.warning("token id capture needs openai: pip install openai")
                return False
            except AttributeError:
                continue  # an older openai without this method
            current = owner.__dict__.get(attribute)
            handle = _handles.get((module_name, path))
            if handle is not None and _in_chain(current, handle):
                continue
            if isinstance(current, proxy_base):
                wrapped_before.append(f"{module_name}.{path}")
            wrapper = _async_wrapper if is_async else _sync_wrapper
            _handles[(module_name, path)] = wrapt.wrap_function_wrapper(module_name, path, wrapper)
        _enabled = True
    if wrapped_before:
        # Our wrapper is then the outer one and runs outside the instrumentation's span.
        logger.warning(
            "openai was instrumented before otel-lightning: token ids and logprobs are not captured on the "
            "spans of %s; call instrument() before instrumenting openai",
            ", ".join(wrapped_before),
        )
    return True


def uninstall() -> None:
    """Stop capturing and remove our wrappers (for tests).

    A wrapper of ours that another wrapper sits on top of is spliced out when wrapt supports it (2.x);
    otherwise it stays in the chain as a pass-through.
    """
    global _enabled
    with _lock:
        _enabled = False
        if not _handles:
            return
        import wrapt

        unwrap_object = getattr(wrapt, "unwrap_object", None)
        for (module_name, path), handle in list(_handles.items()):
            try:
                owner, attribute = _resolve(module_name, path)
                if unwrap_object is not None:
                    unwrap_object(owner, attribute, handle, missing_ok=True)
                elif owner.__dict__.get(attribute) is handle:
                    setattr(owner, attribute, handle.__wrapped__)
                else:
                    continue
                del _handles[(module_name, path)]
            except Exception:
                logger.exception("could not unwrap %s.%s", module_name, path)


def is_installed() -> bool:
    """Whether token ids and logprobs are being captured."""
    return _enabled


def _resolve(module_name: str, path: str) -> tuple[Any, str]:
    module = importlib.import_module(module_name)
    class_name, attribute = path.split(".")
    owner = getattr(module, class_name)
    if attribute not in owner.__dict__:
        raise AttributeError(path)
    return owner, attribute


def _in_chain(current: Any, handle: Any) -> bool:
    for _ in range(32):
        if current is None:
            return False
        if current is handle:
            return True
        current = getattr(current, "__wrapped__", None)
    return False


def _sync_wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if not _enabled or kwargs.get("stream"):
        return wrapped(*args, **kwargs)
    span = trace.get_current_span()
    response = wrapped(*args, **kwargs)
    record_token_details(span, response)
    return response


async def _async_wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if not _enabled or kwargs.get("stream"):
        return await wrapped(*args, **kwargs)
    span = trace.get_current_span()
    response = await wrapped(*args, **kwargs)
    record_token_details(span, response)
    return response


def record_token_details(span: trace.Span, response: Any) -> None:
    """Write the token ids and logprobs found in a completion ``response`` onto ``span``.

    Only an LLM span that is still recording is written to. Never raises.
    """
    try:
        if not _is_llm_span(span):
            logger.debug("no recording LLM span is current: token ids not recorded")
            return
        for key, values in extract_token_details(response).items():
            span.set_attribute(key, values)
    except Exception:  # the agent must never see our failure
        logger.exception("could not record token ids")


def extract_token_details(response: Any) -> dict[str, list[int] | list[float]]:
    """The token ids and logprobs of a completion response's first choice, keyed by semconv attribute."""
    choices = getattr(response, "choices", None)
    if not choices:
        return {}
    choice = choices[0]
    found: dict[str, list[int] | list[float]] = {}
    prompt_ids = _ints(_extra(response, "prompt_token_ids"))
    if prompt_ids is None:
        prompt_ids = _ints(_extra(choice, "prompt_token_ids"))
    if prompt_ids is not None:
        found[semconv.PROMPT_TOKEN_IDS] = prompt_ids
    completion_ids = _ints(_extra(choice, "token_ids"))
    if completion_ids is not None:
        found[semconv.COMPLETION_TOKEN_IDS] = completion_ids
    logprobs = _logprobs(getattr(choice, "logprobs", None))
    if logprobs is not None:
        found[semconv.COMPLETION_LOGPROBS] = logprobs
    return found


def _is_llm_span(span: trace.Span) -> bool:
    if not span.is_recording():
        return False
    attributes = getattr(span, "attributes", None) or {}
    return attributes.get(semconv.GEN_AI_OPERATION_NAME) in semconv.LLM_OPERATIONS


def _extra(model: Any, key: str) -> Any:
    extra = getattr(model, "model_extra", None)
    return extra.get(key) if isinstance(extra, dict) else None


def _ints(values: Any) -> list[int] | None:
    if not isinstance(values, Sequence) or isinstance(values, str | bytes):
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return None
    return [int(v) for v in values]


def _logprobs(logprobs: Any) -> list[float] | None:
    if logprobs is None:
        return None
    content = getattr(logprobs, "content", None)
    if content:
        values = [getattr(token, "logprob", None) for token in content]
    else:
        values = getattr(logprobs, "token_logprobs", None) or []
    numbers = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return numbers if numbers and len(numbers) == len(values) else None
