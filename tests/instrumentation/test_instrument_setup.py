"""instrument() end to end: a real agent process, the real OTLP/HTTP exporter, a receiver on a free port.

Each scenario runs in its own interpreter (agent_scenarios.py), since instrument() sets the process's
global TracerProvider and patches openai.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from agent_scenarios import BURST, COMPLETION_IDS, LOGPROBS, PROMPT_IDS
from instrumentation_support import OtlpReceiver, run_scenario

from otel_lightning import semconv

pytestmark = pytest.mark.slow


def test_instrument_end_to_end(receiver: OtlpReceiver) -> None:
    report = run_scenario("end_to_end", receiver.url)
    assert report["global_is_ours"] is True
    assert report["same_handle"] is True
    assert report["flushed"] is True
    assert report["flushed_after_rejection"] is False  # the server refused a batch
    assert report["flushed_again"] is True
    assert report["ended"] == {"at-1": 3, "at-2": 1, "at-burst": BURST}
    assert receiver.log_requests >= 1  # the GenAI log event went to /v1/logs

    spans = receiver.spans()
    by_name = Counter(span.name for span in spans)
    # Nothing from before instrument(): the pre-instrument reward went to the no-op provider.
    assert by_name == {
        "openai.chat": 2,
        "agent-step": 1,
        semconv.REWARD_SPAN: 1,
        "burst": BURST,
        "after-rejection": 1,
    }
    assert len({span.span_id for span in spans}) == len(spans)  # the burst arrived whole, once
    assert all(span.resource[semconv.SERVICE_NAME] == "agent-under-test" for span in spans)

    chats = {span.attributes[semconv.ATTEMPT_ID]: span for span in spans if span.name == "openai.chat"}
    assert set(chats) == {"at-1", "at-2"}
    sync_chat = chats["at-1"].attributes
    assert sync_chat[semconv.ROLLOUT_ID] == "ro-1"
    assert sync_chat[semconv.EXPERIMENT] == "exp-a"
    assert sync_chat[semconv.RESOURCE_VERSION] == 3
    assert chats["at-2"].attributes[semconv.ROLLOUT_ID] == "ro-2"
    for chat in chats.values():  # sync and async: inside Traceloop's span, exactly what the server sent
        assert chat.attributes[semconv.GEN_AI_OPERATION_NAME] == "chat"
        assert chat.attributes[semconv.PROMPT_TOKEN_IDS] == list(PROMPT_IDS)
        assert chat.attributes[semconv.COMPLETION_TOKEN_IDS] == list(COMPLETION_IDS)
        assert chat.attributes[semconv.COMPLETION_LOGPROBS] == list(LOGPROBS)

    (reward,) = [span for span in spans if span.name == semconv.REWARD_SPAN]
    assert reward.attributes[semconv.REWARD_VALUE] == 0.75
    assert reward.attributes[semconv.REWARD_NAME] == "accuracy"
    assert reward.attributes[semconv.ATTEMPT_ID] == "at-1"
    assert reward.attributes["judge"] == "exact"
    burst_attempts = {span.attributes[semconv.ATTEMPT_ID] for span in spans if span.name == "burst"}
    assert burst_attempts == {"at-burst"}


def test_instrument_adds_to_the_users_provider(receiver: OtlpReceiver) -> None:
    report = run_scenario("existing_provider", receiver.url, env={"OTEL_PROPAGATORS": "tracecontext"})
    assert report["provider_is_user"] is True
    assert report["global_is_user"] is True
    assert report["same_handle"] is True
    assert report["user_options_kept"] is True  # their openai instrumentation was left as they set it up
    assert report["flushed"] is True
    warnings = "\n".join(report["warnings"])
    assert "invalid schedule_delay_ms=0" in warnings
    assert "already called with other arguments" in warnings
    assert "does not carry W3C baggage" in warnings
    assert "openai was instrumented before otel-lightning" in warnings

    # The user's exporter and ours both get the spans, stamped; one openai span (no second instrumentor).
    user_spans: list[dict[str, Any]] = report["user_spans"]
    assert sorted(span["name"] for span in user_spans) == ["openai.chat", "user-root"]
    received = receiver.spans()
    assert sorted(span.name for span in received) == ["openai.chat", "user-root"]
    for attributes in [span["attributes"] for span in user_spans] + [span.attributes for span in received]:
        assert attributes[semconv.ROLLOUT_ID] == "ro-u"
        assert attributes[semconv.ATTEMPT_ID] == "at-u"
        # Our wrapper sits outside their span: no token ids anywhere, in particular not on the root.
        assert semconv.COMPLETION_TOKEN_IDS not in attributes
