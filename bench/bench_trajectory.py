"""Trajectory rebuild throughput: SpanTree.from_spans + build_trajectory on a 50-span agent trace.

The trace: one ``otel_lightning.rollout`` root, an ``invoke_agent`` span, 20 LLM calls in the Traceloop
0.62 layout (``gen_ai.input.messages`` / ``gen_ai.output.messages`` JSON), 19 ``execute_tool`` spans between
them, 4 reward spans and 5 HTTP client spans. Message sizes: a 1,200-character system prompt, a
400-character task, and per turn a 150-character assistant thought with an 80-character tool call and a
400-character tool result; the conversation grows by one turn per call (call k sends 2 + 2k messages), so
the 20 calls carry ~160 KB of message JSON. One core, records already decoded (no OTLP parsing).

Usage: ``python bench/bench_trajectory.py [--seconds S]``; prints a table and writes
bench/results/trajectory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any

from otel_lightning import semconv
from otel_lightning.spans.records import SpanKind, SpanRecord
from otel_lightning.spans.trajectory import RewardMatching, build_trajectory
from otel_lightning.spans.tree import SpanTree

LLM_CALLS = 20
RESULTS = Path(__file__).parent / "results" / "trajectory.json"


def text(rng: random.Random, chars: int) -> str:
    words = []
    length = 0
    while length < chars:
        word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
        words.append(word)
        length += len(word) + 1
    return " ".join(words)[:chars]


def text_part(content: str) -> dict[str, Any]:
    return {"content": content, "type": "text"}


def agent_trace(seed: int = 0) -> list[SpanRecord]:
    """The 50 spans of one attempt, in export order (children before parents)."""
    rng = random.Random(seed)
    trace_id = f"{rng.getrandbits(128):032x}"
    ids = iter(f"{rng.getrandbits(64):016x}" for _ in range(100))
    identity = {semconv.ROLLOUT_ID: "ro-1", semconv.ATTEMPT_ID: "at-1", semconv.EXPERIMENT: "bench"}
    root_id, agent_id = next(ids), next(ids)
    spans: list[SpanRecord] = []

    def span(name: str, parent: str, start: int, end: int, attributes: dict[str, Any]) -> str:
        span_id = next(ids)
        spans.append(
            SpanRecord(
                trace_id=trace_id,
                span_id=span_id,
                parent_span_id=parent,
                name=name,
                kind=SpanKind.CLIENT,
                start_ns=start,
                end_ns=end,
                attributes={**identity, **attributes},
                rollout_id="ro-1",
                attempt_id="at-1",
                experiment="bench",
            )
        )
        return span_id

    system = text(rng, 1200)
    messages: list[dict[str, Any]] = [
        {"role": "system", "parts": [text_part(system)]},
        {"role": "user", "parts": [text_part(text(rng, 400))]},
    ]
    tools = json.dumps(
        [
            {
                "type": "function",
                "name": f"tool_{i}",
                "description": text(rng, 80),
                "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
            }
            for i in range(4)
        ]
    )
    t = 1_000_000
    rewards = 0
    for k in range(LLM_CALLS):
        last = k == LLM_CALLS - 1
        call_id = f"call_{k}"
        arguments = {"query": text(rng, 60), "limit": 5}
        if last:
            output = {"role": "assistant", "parts": [text_part(text(rng, 300))], "finish_reason": "stop"}
        else:
            output = {
                "role": "assistant",
                "parts": [
                    text_part(text(rng, 150)),
                    {"type": "tool_call", "name": "tool_1", "id": call_id, "arguments": arguments},
                ],
                "finish_reason": "tool_call",
            }
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.request.temperature": 0.7,
            "gen_ai.is_streaming": False,
            "gen_ai.openai.api_base": "http://127.0.0.1:8000/v1/",
            "gen_ai.input.messages": json.dumps(messages),
            "gen_ai.tool.definitions": tools,
            "gen_ai.response.model": "gpt-4o",
            "gen_ai.response.id": f"chatcmpl-{k}",
            "gen_ai.response.finish_reasons": [output["finish_reason"]],
            "gen_ai.usage.input_tokens": 400 + 150 * k,
            "gen_ai.usage.output_tokens": 60,
            "gen_ai.usage.total_tokens": 460 + 150 * k,
            "gen_ai.output.messages": json.dumps([output]),
        }
        span("openai.chat", agent_id, t, t + 800_000, attributes)
        if k < 5:
            span("POST", agent_id, t + 10_000, t + 790_000, {"http.request.method": "POST"})
        t += 1_000_000
        if last:
            break
        messages.append({"role": "assistant", "parts": output["parts"]})
        result = text(rng, 400)
        span(
            "execute_tool tool_1",
            agent_id,
            t,
            t + 200_000,
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "tool_1",
                "gen_ai.tool.call.id": call_id,
            },
        )
        messages.append(
            {"role": "tool", "parts": [{"type": "tool_call_response", "id": call_id, "response": result}]}
        )
        t += 300_000
        if k % 5 == 4 and rewards < 4:
            span(semconv.REWARD_SPAN, agent_id, t, t + 1000, {semconv.REWARD_VALUE: 0.25 * rewards})
            rewards += 1
    while rewards < 4:
        span(semconv.REWARD_SPAN, agent_id, t, t + 1000, {semconv.REWARD_VALUE: 1.0})
        rewards += 1
    for span_id, name, parent in (
        (agent_id, "invoke_agent bench", root_id),
        (root_id, semconv.ROLLOUT_SPAN, None),
    ):
        spans.append(
            SpanRecord(
                trace_id=trace_id,
                span_id=span_id,
                parent_span_id=parent,
                name=name,
                kind=SpanKind.INTERNAL,
                start_ns=0,
                end_ns=t + 1000,
                attributes={**identity, semconv.ROLLOUT_FINAL_REWARD: 1.0},
                rollout_id="ro-1",
                attempt_id="at-1",
                experiment="bench",
            )
        )
    return spans


def measure(label: str, fn: Any, spans: list[SpanRecord], seconds: float, rounds: int = 9) -> dict[str, Any]:
    """Best and median of ``rounds`` rounds (CPU time of this single-threaded process: one core).

    The machine is shared, so the best round is the figure for the code (as ``timeit`` advises); the
    median shows what neighbours cost.
    """
    fn(spans)  # warm up
    per_round = seconds / rounds
    times = []
    for _ in range(rounds):
        runs = 0
        started = time.process_time()
        elapsed = 0.0
        while elapsed < per_round:
            for _ in range(10):
                fn(spans)
            runs += 10
            elapsed = time.process_time() - started
        times.append(elapsed / runs)
    best, median = min(times), statistics.median(times)
    return {
        "step": label,
        "rounds": rounds,
        "ms_per_trajectory_best": round(best * 1e3, 4),
        "ms_per_trajectory_median": round(median * 1e3, 4),
        "spans_per_s_best": round(len(spans) / best),
        "spans_per_s_median": round(len(spans) / median),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="CPU seconds per measurement")
    args = parser.parse_args()

    spans = agent_trace()
    trajectory = build_trajectory(spans)
    assert len(spans) == 50 and len(trajectory.steps) == LLM_CALLS, (len(spans), len(trajectory.steps))
    message_bytes = sum(
        len(s.attributes.get(k, ""))
        for s in spans
        for k in ("gen_ai.input.messages", "gen_ai.output.messages")
    )
    rows = [
        measure("SpanTree.from_spans", SpanTree.from_spans, spans, args.seconds),
        measure("SpanTree + llm_calls", lambda s: SpanTree.from_spans(s).llm_calls(), spans, args.seconds),
        measure("build_trajectory (tree included)", build_trajectory, spans, args.seconds),
        measure(
            "build_trajectory, preceding_call",
            lambda s: build_trajectory(s, matching=RewardMatching.PRECEDING_CALL),
            spans,
            args.seconds,
        ),
    ]
    kib = message_bytes / 1024
    print(f"50-span agent trace, {LLM_CALLS} LLM calls, {kib:.0f} KiB of message JSON, one core")
    print(f"{'step':<36}{'ms best':>10}{'ms median':>11}{'spans/s best':>14}{'spans/s median':>16}")
    for row in rows:
        print(
            f"{row['step']:<36}{row['ms_per_trajectory_best']:>10.3f}{row['ms_per_trajectory_median']:>11.3f}"
            f"{row['spans_per_s_best']:>14,}{row['spans_per_s_median']:>16,}"
        )
    target = 50_000
    best, median = rows[2]["spans_per_s_best"], rows[2]["spans_per_s_median"]
    verdict = "met" if best >= target else "NOT met"
    print(
        f"target {target:,} spans/s (build_trajectory, best round): {verdict} ({best:,}, median {median:,})"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "trajectory",
                "spans": len(spans),
                "llm_calls": LLM_CALLS,
                "message_json_bytes": message_bytes,
                "python": platform.python_version(),
                "machine": platform.machine(),
                "target_spans_per_s": target,
                "load_average": list(os.getloadavg()),
                "results": rows,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
