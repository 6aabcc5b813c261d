"""Trajectories: an attempt's LLM calls as (state, action, reward) steps, rebuilt from its spans.

**Steps** are the attempt's LLM calls in start-time order; a step's state is the call's input messages and
its action the output messages.

**Rewards** (read by :mod:`.rewards`) come from ``otel_lightning.reward`` spans (``emit_reward``) and from
the standard ``gen_ai.evaluation.result`` event, as a span event or a log record. Each is *attributed* to a
step: an evaluation attached to an LLM span belongs to that call; any other reward belongs to the call that
ended last before it (at or before its time). ``Step.rewards`` always lists the rewards attributed to the
step; ``Step.reward``, the scalar a trainer uses, follows the :class:`RewardMatching` policy.

**Final reward**: ``attempt.reward`` when an attempt is given and has one; else the
``otel_lightning.rollout.reward`` attribute of the ``otel_lightning.rollout`` root span; else the last reward
named ``reward``.

**Spans used**: with an attempt, only spans stamped with its ``attempt_id``, plus unstamped spans of the same
traces (a sub-process that did not inherit the rollout context); spans of other attempts never mix in.
Without an attempt, the spans must belong to at most one attempt (:func:`build_trajectories` splits them).
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from otel_lightning import semconv
from otel_lightning.exceptions import ValidationError
from otel_lightning.resources import JSON
from otel_lightning.spans.llm import LLMCall, Message, is_llm_span
from otel_lightning.spans.records import LogRecord, SpanRecord, StatusCode
from otel_lightning.spans.rewards import Reward, RewardSource, final_reward, find_rewards
from otel_lightning.spans.tree import SpanTree
from otel_lightning.types import Attempt

__all__ = [
    "Reward",
    "RewardMatching",
    "RewardSource",
    "Step",
    "ToolExecution",
    "Trajectory",
    "build_trajectories",
    "build_trajectory",
]

logger = logging.getLogger(__name__)

# GenAI semconv tool-execution keys that semconv.py does not name yet.
GEN_AI_TOOL_CALL_ARGUMENTS = "gen_ai.tool.call.arguments"
GEN_AI_TOOL_CALL_RESULT = "gen_ai.tool.call.result"
EXECUTE_TOOL_OPERATION = "execute_tool"
OI_TOOL_KIND = "TOOL"
OI_TOOL_NAME = "tool.name"


class RewardMatching(StrEnum):
    """How the scalar ``Step.reward`` is chosen."""

    FINAL_TO_ALL = "final_to_all"
    """Every step gets the final reward (the default; what GRPO-style trainers expect)."""
    PRECEDING_CALL = "preceding_call"
    """Each step gets the sum of the rewards attributed to it (the call that ended last before each);
    steps with none get ``None``."""
    FINAL_TO_LAST = "final_to_last"
    """Only the last step gets the final reward; the others get ``None``."""


@dataclass(frozen=True, slots=True)
class ToolExecution:
    """A tool run seen as its own span (``execute_tool {name}``, ``gen_ai.tool.name``, OpenInference TOOL)."""

    name: str
    span_id: str
    start_ns: int
    end_ns: int
    call_id: str | None = None
    """The model's tool-call id, linking it to a :class:`~otel_lightning.spans.llm.ToolCall`."""
    arguments: JSON = None
    result: JSON = None
    error: bool = False

    def to_json(self) -> dict[str, JSON]:
        return {
            "name": self.name,
            "span_id": self.span_id,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "call_id": self.call_id,
            "arguments": self.arguments,
            "result": self.result,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ToolExecution:
        return cls(
            name=data["name"],
            span_id=data["span_id"],
            start_ns=data["start_ns"],
            end_ns=data["end_ns"],
            call_id=data.get("call_id"),
            arguments=data.get("arguments"),
            result=data.get("result"),
            error=bool(data.get("error")),
        )


@dataclass(frozen=True, slots=True)
class Step:
    """One LLM call of a trajectory, with its reward."""

    index: int
    llm_call: LLMCall
    reward: float | None
    """The scalar reward under the trajectory's matching policy."""
    rewards: tuple[Reward, ...] = ()
    """Rewards attributed to this step (whatever the policy)."""
    tool_calls: tuple[ToolExecution, ...] = ()
    """Tool runs that started after this call ended and before the next call."""

    @property
    def state(self) -> tuple[Message, ...]:
        """What the model saw: the call's input messages."""
        return self.llm_call.input_messages

    @property
    def action(self) -> tuple[Message, ...]:
        """What the model did: the call's output messages."""
        return self.llm_call.output_messages

    def to_json(self) -> dict[str, JSON]:
        return {
            "index": self.index,
            "llm_call": self.llm_call.to_json(),
            "reward": self.reward,
            "rewards": [r.to_json() for r in self.rewards],
            "tool_calls": [t.to_json() for t in self.tool_calls],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Step:
        return cls(
            index=data["index"],
            llm_call=LLMCall.from_json(data["llm_call"]),
            reward=data.get("reward"),
            rewards=tuple(Reward.from_json(r) for r in data.get("rewards") or ()),
            tool_calls=tuple(ToolExecution.from_json(t) for t in data.get("tool_calls") or ()),
        )


@dataclass(frozen=True, slots=True)
class Trajectory:
    """One attempt as steps and rewards."""

    rollout_id: str | None
    attempt_id: str | None
    experiment: str | None
    resource_version: int | None
    steps: tuple[Step, ...]
    rewards: tuple[Reward, ...]
    """Every reward found, by time; includes the final reward when it came from the attempt or root span."""
    final_reward: float | None
    span_count: int
    """Distinct spans the trajectory was built from."""
    expected_span_count: int | None
    """Spans the worker reported for the attempt."""
    complete: bool
    """Whether every span the worker reported has arrived."""
    status: str | None
    """The attempt's status; without an attempt, ``succeeded``/``failed`` from the rollout span's status."""
    matching: RewardMatching = RewardMatching.FINAL_TO_ALL

    @property
    def llm_calls(self) -> list[LLMCall]:
        return [step.llm_call for step in self.steps]

    def triplets(self) -> list[tuple[tuple[Message, ...], tuple[Message, ...], float | None]]:
        """``(state, action, reward)`` per step."""
        return [(step.state, step.action, step.reward) for step in self.steps]

    def to_json(self) -> dict[str, JSON]:
        return {
            "rollout_id": self.rollout_id,
            "attempt_id": self.attempt_id,
            "experiment": self.experiment,
            "resource_version": self.resource_version,
            "steps": [s.to_json() for s in self.steps],
            "rewards": [r.to_json() for r in self.rewards],
            "final_reward": self.final_reward,
            "span_count": self.span_count,
            "expected_span_count": self.expected_span_count,
            "complete": self.complete,
            "status": self.status,
            "matching": self.matching.value,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Trajectory:
        return cls(
            rollout_id=data.get("rollout_id"),
            attempt_id=data.get("attempt_id"),
            experiment=data.get("experiment"),
            resource_version=data.get("resource_version"),
            steps=tuple(Step.from_json(s) for s in data.get("steps") or ()),
            rewards=tuple(Reward.from_json(r) for r in data.get("rewards") or ()),
            final_reward=data.get("final_reward"),
            span_count=data.get("span_count", 0),
            expected_span_count=data.get("expected_span_count"),
            complete=bool(data.get("complete")),
            status=data.get("status"),
            matching=RewardMatching(data.get("matching", RewardMatching.FINAL_TO_ALL)),
        )


def build_trajectory(
    spans: Sequence[SpanRecord],
    logs: Sequence[LogRecord] = (),
    *,
    attempt: Attempt | None = None,
    matching: RewardMatching = RewardMatching.FINAL_TO_ALL,
) -> Trajectory:
    """Rebuild one attempt's trajectory from its spans (and log records).

    Raises:
        ValidationError: no attempt is given and the spans carry more than one ``attempt_id``.
    """
    if attempt is not None:
        spans, logs = _attempt_records(spans, logs, attempt.attempt_id)
    else:
        attempt_ids = {s.attempt_id for s in spans if s.attempt_id is not None}
        if len(attempt_ids) > 1:
            raise ValidationError(
                f"spans of {len(attempt_ids)} attempts: pass attempt= or use build_trajectories()"
            )
    tree = SpanTree.from_spans(spans, logs)
    root = tree.find_first(lambda n: n.span.name == semconv.ROLLOUT_SPAN)
    root_span = root.span if root is not None else None
    calls = tree.llm_calls()
    rewards = find_rewards(tree)
    final, final_record = final_reward(attempt, root_span, rewards)
    all_rewards = sorted((*rewards, final_record) if final_record else rewards, key=lambda r: r.time_ns)

    call_ids = {c.span_id: i for i, c in enumerate(calls)}
    preceding = _Preceding(calls)
    attributed: list[list[Reward]] = [[] for _ in calls]
    for reward in rewards:
        index = call_ids.get(reward.span_id) if reward.span_id else None
        if index is None:
            index = preceding(reward.time_ns)
        if index is not None:
            attributed[index].append(reward)
    tools: list[list[ToolExecution]] = [[] for _ in calls]
    for tool in _tool_executions(tree):
        index = preceding(tool.start_ns)
        if index is not None:
            tools[index].append(tool)

    steps = []
    for i, call in enumerate(calls):
        if matching is RewardMatching.FINAL_TO_ALL:
            value = final
        elif matching is RewardMatching.FINAL_TO_LAST:
            value = final if i == len(calls) - 1 else None
        else:
            value = math.fsum(r.value for r in attributed[i]) if attributed[i] else None
        steps.append(Step(i, call, value, tuple(attributed[i]), tuple(tools[i])))

    first = next((s for s in tree.walk() if s.span.attempt_id or s.span.rollout_id), None)
    first_span = first.span if first is not None else None
    span_count = len(tree)
    expected = attempt.span_count if attempt is not None else None
    return Trajectory(
        rollout_id=attempt.rollout_id if attempt else (first_span.rollout_id if first_span else None),
        attempt_id=attempt.attempt_id if attempt else (first_span.attempt_id if first_span else None),
        experiment=attempt.experiment if attempt else (first_span.experiment if first_span else None),
        resource_version=attempt.resource_version if attempt else _resource_version(root_span, tree),
        steps=tuple(steps),
        rewards=tuple(all_rewards),
        final_reward=final,
        span_count=span_count,
        expected_span_count=expected,
        complete=expected is not None and span_count >= expected,
        status=attempt.status.value if attempt else _status(root_span),
        matching=matching,
    )


def build_trajectories(
    spans: Sequence[SpanRecord],
    logs: Sequence[LogRecord] = (),
    *,
    attempts: Sequence[Attempt] = (),
    matching: RewardMatching = RewardMatching.FINAL_TO_ALL,
) -> list[Trajectory]:
    """One trajectory per attempt found in the spans (by first start), using the given attempts' records."""
    by_id = {a.attempt_id: a for a in attempts}
    first_start: dict[str | None, int] = {}
    for span in spans:
        if span.attempt_id not in first_start or span.start_ns < first_start[span.attempt_id]:
            first_start[span.attempt_id] = span.start_ns
    if len(first_start) <= 1:
        only = next(iter(first_start), None)
        return [build_trajectory(spans, logs, attempt=by_id.get(only) if only else None, matching=matching)]
    result = []
    for attempt_id in sorted((a for a in first_start if a is not None), key=first_start.__getitem__):
        attempt = by_id.get(attempt_id)
        if attempt is None:
            own, own_logs = _attempt_records(spans, logs, attempt_id)
            result.append(build_trajectory(own, own_logs, matching=matching))
        else:
            result.append(build_trajectory(spans, logs, attempt=attempt, matching=matching))
    return result


def _attempt_records(
    spans: Sequence[SpanRecord], logs: Sequence[LogRecord], attempt_id: str
) -> tuple[list[SpanRecord], list[LogRecord]]:
    traces = {s.trace_id for s in spans if s.attempt_id == attempt_id}
    own = [s for s in spans if s.attempt_id == attempt_id or (s.attempt_id is None and s.trace_id in traces)]
    span_ids = {s.span_id for s in own}
    own_logs = [
        log
        for log in logs
        if log.attempt_id == attempt_id
        or (
            log.attempt_id is None
            and (log.span_id in span_ids or (not log.span_id and log.trace_id in traces))
        )
    ]
    return own, own_logs


class _Preceding:
    """Finds the call that ended last at or before a time (the later call on equal ends)."""

    __slots__ = ("ends", "order")

    def __init__(self, calls: Sequence[LLMCall]) -> None:
        self.order = sorted(range(len(calls)), key=lambda i: (calls[i].end_ns, i))
        self.ends = [calls[i].end_ns for i in self.order]

    def __call__(self, time_ns: int) -> int | None:
        position = bisect_right(self.ends, time_ns)
        return self.order[position - 1] if position else None


def _tool_executions(tree: SpanTree) -> list[ToolExecution]:
    tools = []
    for node in tree.walk():
        span = node.span
        attrs = span.attributes
        name = attrs.get(semconv.GEN_AI_TOOL_NAME)
        is_tool = attrs.get(semconv.GEN_AI_OPERATION_NAME) == EXECUTE_TOOL_OPERATION
        if attrs.get(semconv.OPENINFERENCE_SPAN_KIND) == OI_TOOL_KIND:
            is_tool, name = True, name or attrs.get(OI_TOOL_NAME)
        if not (is_tool or name) or is_llm_span(span):
            continue
        if not isinstance(name, str) or not name:
            prefix = EXECUTE_TOOL_OPERATION + " "
            name = span.name[len(prefix) :] if span.name.startswith(prefix) else span.name
        call_id = attrs.get(semconv.GEN_AI_TOOL_CALL_ID)
        tools.append(
            ToolExecution(
                name=name,
                span_id=span.span_id,
                start_ns=span.start_ns,
                end_ns=span.end_ns,
                call_id=call_id if isinstance(call_id, str) else None,
                arguments=attrs.get(GEN_AI_TOOL_CALL_ARGUMENTS, attrs.get("input.value")),
                result=attrs.get(GEN_AI_TOOL_CALL_RESULT, attrs.get("output.value")),
                error=span.status_code is StatusCode.ERROR,
            )
        )
    tools.sort(key=lambda t: t.start_ns)
    return tools


def _resource_version(root: SpanRecord | None, tree: SpanTree) -> int | None:
    candidates = [root] if root is not None else [node.span for node in tree.roots]
    for span in candidates:
        value = span.attributes.get(semconv.RESOURCE_VERSION)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.isdigit():
            return int(value)
    return None


def _status(root: SpanRecord | None) -> str | None:
    if root is None or root.status_code is StatusCode.UNSET:
        return None
    return "failed" if root.status_code is StatusCode.ERROR else "succeeded"
