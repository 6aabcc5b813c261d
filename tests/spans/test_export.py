"""Exports read back with standard readers (json, pyarrow) and match the trajectories."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from otel_lightning.spans.export import ExportFormat, write
from otel_lightning.spans.llm import LLMCall, Message, ToolCall
from otel_lightning.spans.trajectory import RewardMatching, Step, Trajectory


def trajectory(rollout_id: str, with_ids: bool) -> Trajectory:
    first = LLMCall(
        span_id="01" * 8,
        trace_id="02" * 16,
        operation="chat",
        provider="openai",
        request_model="m",
        response_model="m-1",
        input_messages=(
            Message("system", "You route tickets."),
            Message("user", "My card was charged twice"),
        ),
        output_messages=(Message("assistant", "", (ToolCall("c1", "lookup", '{"q": "charge"}'),)),),
        prompt_token_ids=(1, 2, 3) if with_ids else None,
        completion_token_ids=(7, 8) if with_ids else None,
        completion_logprobs=(-0.5, -0.25) if with_ids else None,
    )
    second = LLMCall(
        span_id="03" * 8,
        trace_id="02" * 16,
        operation="chat",
        provider="openai",
        request_model="m",
        response_model="m-1",
        input_messages=(Message("user", "My card was charged twice"), Message("tool", "2 charges", (), "c1")),
        output_messages=(Message("assistant", "billing"),),
    )
    steps = (Step(0, first, 1.0), Step(1, second, 1.0))
    return Trajectory(
        rollout_id=rollout_id,
        attempt_id=f"{rollout_id}-a",
        experiment="exp",
        resource_version=3,
        steps=steps,
        rewards=(),
        final_reward=1.0,
        span_count=3,
        expected_span_count=3,
        complete=True,
        status="ok",
        matching=RewardMatching.FINAL_TO_ALL,
    )


def test_sft_jsonl_is_openai_chat_format(tmp_path: Path) -> None:
    out = tmp_path / "sft.jsonl"
    assert write([trajectory("r1", True)], out, ExportFormat.SFT) == 2
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[0]["messages"][0] == {"role": "system", "content": "You route tickets."}
    assert lines[0]["messages"][-1]["tool_calls"] == [
        {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "charge"}'}}
    ]
    assert lines[1]["messages"][1] == {"role": "tool", "content": "2 charges", "tool_call_id": "c1"}
    assert lines[1]["messages"][-1] == {"role": "assistant", "content": "billing"}


def test_triplets_jsonl(tmp_path: Path) -> None:
    out = tmp_path / "triplets.jsonl"
    write([trajectory("r1", True), trajectory("r2", False)], out, ExportFormat.TRIPLETS)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(t["rollout_id"], t["step"]) for t in lines] == [("r1", 0), ("r1", 1), ("r2", 0), ("r2", 1)]
    assert lines[1]["action"] == [{"role": "assistant", "content": "billing"}]
    assert {t["reward"] for t in lines} == {1.0}
    assert lines[0]["resource_version"] == 3


def test_parquet_has_token_ids_and_rewards(tmp_path: Path) -> None:
    out = tmp_path / "steps.parquet"
    assert (
        write([trajectory("r1", True), trajectory("r2", False)], out, ExportFormat.PARQUET, row_group_size=3)
        == 4
    )
    table = pq.read_table(out)
    rows = table.to_pylist()
    assert table.num_rows == 4
    assert rows[0]["prompt_token_ids"] == [1, 2, 3]
    assert rows[0]["response_token_ids"] == [7, 8]
    assert rows[0]["response_logprobs"] == [-0.5, -0.25]
    assert rows[2]["prompt_token_ids"] is None
    assert rows[1]["response"] == "billing" and rows[1]["reward"] == 1.0
    assert rows[0]["prompt"][1] == {"role": "user", "content": "My card was charged twice"}
    assert rows[0]["data_source"] == "exp"


def test_empty_export_still_writes_a_readable_file(tmp_path: Path) -> None:
    out = tmp_path / "empty.parquet"
    assert write([], out, ExportFormat.PARQUET) == 0
    assert pq.read_table(out).num_rows == 0
