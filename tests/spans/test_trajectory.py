"""Trajectories: steps, reward sources, matching policies, attempt filtering, completeness, JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest
import record_llm_spans as conversation
from conftest import CONVENTIONS, load_fixture, make_span, sid

from otel_lightning import semconv
from otel_lightning.exceptions import ValidationError
from otel_lightning.spans.llm import Message
from otel_lightning.spans.records import LogRecord, SpanEvent, SpanRecord, StatusCode
from otel_lightning.spans.trajectory import (
    Reward,
    RewardMatching,
    RewardSource,
    Trajectory,
    build_trajectories,
    build_trajectory,
)
from otel_lightning.types import Attempt, AttemptStatus


def llm_span(span_id: str, start: int, end: int, prompt: str, answer: str, **kw: Any) -> SpanRecord:
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "m",
        "gen_ai.input.messages": json.dumps(
            [{"role": "user", "parts": [{"type": "text", "content": prompt}]}]
        ),
        "gen_ai.output.messages": json.dumps(
            [{"role": "assistant", "parts": [{"type": "text", "content": answer}], "finish_reason": "stop"}]
        ),
    }
    return make_span(
        span_id, kw.pop("parent", "root"), start, end, name="openai.chat", attributes=attributes, **kw
    )


def reward_span(span_id: str, at: int, value: Any, name: str | None = None, **kw: Any) -> SpanRecord:
    attributes = {semconv.REWARD_VALUE: value}
    if name is not None:
        attributes[semconv.REWARD_NAME] = name
    return make_span(
        span_id, kw.pop("parent", "root"), at, at + 1, name=semconv.REWARD_SPAN, attributes=attributes, **kw
    )


def root_span(end: int = 1000, reward: float | None = None, **kw: Any) -> SpanRecord:
    attributes: dict[str, Any] = {semconv.RESOURCE_VERSION: 7}
    if reward is not None:
        attributes[semconv.ROLLOUT_FINAL_REWARD] = reward
    return make_span("root", None, 0, end, name=semconv.ROLLOUT_SPAN, attributes=attributes, **kw)


def attempt(**kw: Any) -> Attempt:
    fields: dict[str, Any] = dict(
        attempt_id="a1",
        rollout_id="r1",
        experiment="exp",
        sequence=1,
        status=AttemptStatus.SUCCEEDED,
        worker_id="w",
        resource_version=4,
        started_ns=0,
        lease_expires_ns=10**12,
        ended_ns=1000,
        reward=None,
        span_count=None,
    )
    fields.update(kw)
    return Attempt(**fields)


def three_calls(*extra: SpanRecord, final: float | None = 0.5) -> list[SpanRecord]:
    return [
        root_span(reward=final),
        llm_span("c1", 100, 200, "q1", "a1"),
        llm_span("c2", 300, 400, "q2", "a2"),
        llm_span("c3", 500, 600, "q3", "a3"),
        *extra,
    ]


def test_steps_are_the_llm_calls_with_state_and_action() -> None:
    trajectory = build_trajectory(three_calls())
    assert [s.index for s in trajectory.steps] == [0, 1, 2]
    assert trajectory.steps[1].state == (Message("user", "q2"),)
    assert trajectory.steps[1].action == (Message("assistant", "a2"),)
    assert trajectory.triplets() == [
        ((Message("user", f"q{i}"),), (Message("assistant", f"a{i}"),), 0.5) for i in (1, 2, 3)
    ]
    assert trajectory.rollout_id == "r1" and trajectory.attempt_id == "a1"
    assert trajectory.resource_version == 7
    assert trajectory.span_count == 4


@pytest.mark.parametrize(
    ("matching", "expected"),
    [
        (RewardMatching.FINAL_TO_ALL, [0.5, 0.5, 0.5]),
        (RewardMatching.FINAL_TO_LAST, [None, None, 0.5]),
        # r(250) -> c1; r(450) and e(460) -> c2 (summed); nothing for c3; r(50) precedes every call.
        (RewardMatching.PRECEDING_CALL, [0.25, 1.25, None]),
    ],
)
def test_reward_matching_policies(matching: RewardMatching, expected: list[float | None]) -> None:
    spans = three_calls(
        reward_span("early", 50, 9.0, name="format"),
        reward_span("r1", 250, 0.25),
        reward_span("r2", 450, 1.0),
        reward_span("r3", 460, "0.25", name="style"),
    )
    trajectory = build_trajectory(spans, matching=matching)
    assert [s.reward for s in trajectory.steps] == expected
    assert trajectory.matching is matching
    # Attribution is the same whatever the policy.
    assert [[r.span_id for r in s.rewards] for s in trajectory.steps] == [
        [sid("r1")],
        [sid("r2"), sid("r3")],
        [],
    ]
    assert trajectory.steps[1].rewards[1] == Reward("style", 0.25, 460, sid("r3"), RewardSource.EMIT)


def test_evaluation_events_on_spans_and_in_logs() -> None:
    evaluated = llm_span(
        "c1",
        100,
        200,
        "q1",
        "a1",
        events=[
            SpanEvent(
                semconv.EVALUATION_EVENT,
                700,
                {semconv.EVALUATION_NAME: "relevance", semconv.EVALUATION_SCORE_VALUE: 0.9},
            )
        ],
    )
    spans = [
        root_span(),
        evaluated,
        llm_span("c2", 300, 400, "q2", "a2"),
        make_span("judge", "root", 410, 420, name="judge"),
    ]
    log = LogRecord(
        time_ns=415,
        observed_ns=416,
        trace_id=spans[0].trace_id,
        span_id=sid("judge"),
        attributes={semconv.EVALUATION_SCORE_VALUE: 0.4},
        event_name=semconv.EVALUATION_EVENT,
    )
    not_a_score = LogRecord(
        0,
        0,
        None,
        sid("judge"),
        attributes={semconv.EVALUATION_SCORE_LABEL: "good"},
        event_name=semconv.EVALUATION_EVENT,
    )
    trajectory = build_trajectory(spans, [log, not_a_score], matching=RewardMatching.PRECEDING_CALL)
    # The span event belongs to the call it is attached to, though it comes after the second call.
    assert trajectory.steps[0].rewards == (Reward("relevance", 0.9, 700, sid("c1"), RewardSource.EVALUATION),)
    assert trajectory.steps[1].rewards == (Reward("reward", 0.4, 415, sid("judge"), RewardSource.EVALUATION),)
    assert [s.reward for s in trajectory.steps] == [0.9, 0.4]
    # No final reward anywhere but a reward named "reward": it becomes the final reward.
    assert trajectory.final_reward == 0.4
    assert [r.source for r in trajectory.rewards] == [RewardSource.EVALUATION, RewardSource.EVALUATION]


def test_final_reward_priority() -> None:
    spans = three_calls(reward_span("r", 650, 0.1), final=0.5)
    assert build_trajectory(spans, attempt=attempt(reward=0.8)).final_reward == 0.8
    assert build_trajectory(spans).final_reward == 0.5
    without_root_reward = three_calls(
        reward_span("r", 650, 0.1), reward_span("x", 660, 0.3, name="x"), final=None
    )
    assert build_trajectory(without_root_reward).final_reward == 0.1
    assert build_trajectory(three_calls(final=None)).final_reward is None
    final = build_trajectory(spans, attempt=attempt(reward=0.8)).rewards[-1]
    assert final == Reward("reward", 0.8, 1000, sid("root"), RewardSource.FINAL)


def test_bad_reward_values_are_ignored() -> None:
    spans = three_calls(
        reward_span("nan", 250, float("nan")),
        reward_span("text", 260, "high"),
        reward_span("flag", 270, True),
        final=None,
    )
    trajectory = build_trajectory(spans, matching=RewardMatching.PRECEDING_CALL)
    assert trajectory.rewards == ()
    assert [s.reward for s in trajectory.steps] == [None, None, None]


def test_tool_executions_attach_to_the_call_before_them() -> None:
    spans, logs = load_fixture("traceloop.json")
    trajectory = build_trajectory(spans, logs)
    tools = [[t.name for t in s.tool_calls] for s in trajectory.steps]
    assert tools == [[], [], ["get_weather"], []]
    tool = trajectory.steps[2].tool_calls[0]
    assert tool.call_id == trajectory.steps[2].llm_call.tool_calls[0].id == "call_1"
    assert tool.result == conversation.TOOL_RESULT
    assert json.loads(tool.arguments) == json.loads(conversation.TOOL_ARGUMENTS)


def two_attempts() -> list[SpanRecord]:
    first = [
        make_span("root1", None, 0, 1000, name=semconv.ROLLOUT_SPAN, trace="t1", attempt="a1"),
        llm_span("x1", 100, 200, "first try", "no", parent="root1", trace="t1", attempt="a1"),
        reward_span("xr", 300, 0.0, parent="root1", trace="t1", attempt="a1"),
    ]
    second = [
        make_span("root2", None, 2000, 3000, name=semconv.ROLLOUT_SPAN, trace="t2", attempt="a2"),
        llm_span("y1", 2100, 2200, "second try", "yes", parent="root2", trace="t2", attempt="a2"),
        # An unstamped span in the second attempt's trace (a sub-process without the rollout context).
        make_span("tool", "root2", 2300, 2400, trace="t2", attempt=None, rollout=None),
        reward_span("yr", 2500, 1.0, parent="root2", trace="t2", attempt="a2"),
        # An unstamped span of an unrelated trace never joins.
        make_span("stranger", None, 2100, 2200, trace="t9", attempt=None, rollout=None),
    ]
    return first + second


def test_only_the_given_attempts_spans_are_used() -> None:
    spans = two_attempts()
    second = build_trajectory(spans, attempt=attempt(attempt_id="a2", reward=None))
    assert [s.llm_call.completion for s in second.steps] == ["yes"]
    assert second.span_count == 4
    assert second.final_reward == 1.0
    assert second.attempt_id == "a2" and second.resource_version == 4 and second.status == "succeeded"
    first = build_trajectory(spans, attempt=attempt(attempt_id="a1"))
    assert [s.llm_call.completion for s in first.steps] == ["no"]
    assert first.final_reward == 0.0


def test_mixed_attempts_without_an_attempt_are_refused_and_can_be_split() -> None:
    spans = two_attempts()
    with pytest.raises(ValidationError):
        build_trajectory(spans)
    split = build_trajectories(spans, attempts=[attempt(attempt_id="a2", reward=0.7)])
    assert [t.attempt_id for t in split] == ["a1", "a2"]
    assert [t.final_reward for t in split] == [0.0, 0.7]
    assert [len(t.steps) for t in split] == [1, 1]


@pytest.mark.parametrize(
    ("expected", "span_count", "complete"),
    [(4, 4, True), (3, 4, True), (5, 4, False), (None, 4, False)],
)
def test_completeness_against_the_reported_span_count(
    expected: int | None, span_count: int, complete: bool
) -> None:
    trajectory = build_trajectory(three_calls(), attempt=attempt(span_count=expected))
    assert trajectory.span_count == span_count
    assert trajectory.expected_span_count == expected
    assert trajectory.complete is complete
    assert build_trajectory(three_calls()).complete is False


def test_duplicated_spans_are_counted_once() -> None:
    spans = three_calls()
    trajectory = build_trajectory(spans + spans[1:3], attempt=attempt(span_count=4))
    assert trajectory.span_count == 4 and trajectory.complete
    assert len(trajectory.steps) == 3


def test_status_without_attempt_comes_from_the_rollout_span() -> None:
    failed = [root_span(status=StatusCode.ERROR), llm_span("c1", 1, 2, "q", "a")]
    assert build_trajectory(failed).status == "failed"
    assert build_trajectory(three_calls()).status is None
    assert (
        build_trajectory(three_calls(), attempt=attempt(status=AttemptStatus.TIMED_OUT)).status == "timed_out"
    )


def test_empty_input_gives_an_empty_trajectory() -> None:
    trajectory = build_trajectory([])
    assert trajectory.steps == () and trajectory.span_count == 0 and trajectory.final_reward is None
    assert trajectory.triplets() == []


def test_json_round_trip() -> None:
    spans, logs = load_fixture("traceloop.json")
    spans.append(reward_span("extra", spans[-1].end_ns + 1, 0.5, name="bonus", trace="x"))
    for matching in RewardMatching:
        trajectory = build_trajectory(
            spans, logs, attempt=attempt(attempt_id="at-1", span_count=7), matching=matching
        )
        data = json.loads(json.dumps(trajectory.to_json()))
        assert Trajectory.from_json(data) == trajectory


def test_every_real_instrumentation_gives_the_same_trajectory(live_recordings: dict[str, Any]) -> None:
    results = {}
    for name in CONVENTIONS:
        spans, logs = live_recordings[name]
        trajectory = build_trajectory(spans, logs, matching=RewardMatching.PRECEDING_CALL)
        assert trajectory.span_count == 7
        assert (trajectory.rollout_id, trajectory.attempt_id, trajectory.resource_version) == (
            "ro-1",
            "at-1",
            3,
        )
        results[name] = (
            trajectory.triplets(),
            trajectory.final_reward,
            [len(s.tool_calls) for s in trajectory.steps],
        )
    reference = results["traceloop"]
    assert reference[1] == 1.0
    assert [t[2] for t in reference[0]] == [None, None, None, 1.0]
    assert all(result == reference for result in results.values())


def test_preceding_call_uses_end_times_of_overlapping_calls() -> None:
    # Concurrent calls: c1 starts first but ends last.
    spans = [
        root_span(),
        llm_span("c1", 100, 500, "q1", "a1"),
        llm_span("c2", 200, 300, "q2", "a2"),
        reward_span("r_mid", 350, 0.5),
        reward_span("r_end", 600, 2.0),
    ]
    trajectory = build_trajectory(spans, matching=RewardMatching.PRECEDING_CALL)
    assert [s.llm_call.completion for s in trajectory.steps] == ["a1", "a2"]
    assert [s.reward for s in trajectory.steps] == [2.0, 0.5]
