"""Trajectories as training data: OpenAI chat JSONL (SFT), step triplets JSONL, and Parquet for RL trainers.

Each LLM call of a trajectory is one example. The conversions are pure; the writers take an iterable of
trajectories, so an export streams and never holds more than one Parquet row group in memory.

- ``sft``: one line per step, ``{"messages": [...the prompt..., the assistant reply]}`` in the OpenAI
  chat-completions format that fine-tuning APIs and TRL's ``SFTTrainer`` read.
- ``triplets``: one line per step, ``{"state": [...], "action": [...], "reward": r, ...ids}``.
- ``parquet``: one row per step with ``prompt`` (chat messages), ``response``, ``prompt_token_ids``,
  ``response_token_ids``, ``response_logprobs``, ``reward`` and the rollout's ids; ``data_source`` is the
  experiment, as verl's RL datasets name it. Token-id columns are null where the model server returned none.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any

from otel_lightning.resources import JSON
from otel_lightning.spans.trajectory import Step, Trajectory


class ExportFormat(StrEnum):
    """The export formats."""

    SFT = "sft"
    TRIPLETS = "triplets"
    PARQUET = "parquet"


def _ids(trajectory: Trajectory, step: Step) -> dict[str, JSON]:
    return {
        "rollout_id": trajectory.rollout_id,
        "attempt_id": trajectory.attempt_id,
        "experiment": trajectory.experiment,
        "resource_version": trajectory.resource_version,
        "step": step.index,
    }


def sft_records(trajectory: Trajectory) -> Iterator[dict[str, JSON]]:
    """One OpenAI chat example per step: the messages sent, then the assistant's reply."""
    for step in trajectory.steps:
        call = step.llm_call
        if not call.output_messages:
            continue
        messages = [m.to_openai() for m in call.input_messages] + [call.output_messages[0].to_openai()]
        yield {"messages": messages}


def triplet_records(trajectory: Trajectory) -> Iterator[dict[str, JSON]]:
    """One (state, action, reward) record per step, with the ids that locate it."""
    for step in trajectory.steps:
        yield {
            **_ids(trajectory, step),
            "state": [m.to_json() for m in step.state],
            "action": [m.to_json() for m in step.action],
            "reward": step.reward,
            "final_reward": trajectory.final_reward,
        }


def parquet_rows(trajectory: Trajectory) -> Iterator[dict[str, Any]]:
    """One row per step in the Parquet layout (see the module docstring)."""
    for step in trajectory.steps:
        call = step.llm_call
        yield {
            **_ids(trajectory, step),
            "data_source": trajectory.experiment,
            "prompt": [{"role": m.role, "content": m.content} for m in call.input_messages],
            "response": call.completion,
            "prompt_token_ids": list(call.prompt_token_ids) if call.prompt_token_ids is not None else None,
            "response_token_ids": (
                list(call.completion_token_ids) if call.completion_token_ids is not None else None
            ),
            "response_logprobs": (
                list(call.completion_logprobs) if call.completion_logprobs is not None else None
            ),
            "reward": step.reward,
            "final_reward": trajectory.final_reward,
            "model": call.response_model or call.request_model,
        }


def _parquet_schema() -> Any:
    import pyarrow as pa

    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    return pa.schema(
        [
            ("rollout_id", pa.string()),
            ("attempt_id", pa.string()),
            ("experiment", pa.string()),
            ("resource_version", pa.int64()),
            ("step", pa.int64()),
            ("data_source", pa.string()),
            ("prompt", pa.list_(message)),
            ("response", pa.string()),
            ("prompt_token_ids", pa.list_(pa.int64())),
            ("response_token_ids", pa.list_(pa.int64())),
            ("response_logprobs", pa.list_(pa.float64())),
            ("reward", pa.float64()),
            ("final_reward", pa.float64()),
            ("model", pa.string()),
        ]
    )


def write(
    trajectories: Iterable[Trajectory], path: str | Path, fmt: ExportFormat, *, row_group_size: int = 10_000
) -> int:
    """Write the trajectories' steps to ``path`` in ``fmt``; returns the number of records written."""
    path = Path(path)
    if fmt is ExportFormat.PARQUET:
        return _write_parquet(trajectories, path, row_group_size)
    convert = sft_records if fmt is ExportFormat.SFT else triplet_records
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for trajectory in trajectories:
            for record in convert(trajectory):
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                count += 1
    return count


def _write_parquet(trajectories: Iterable[Trajectory], path: Path, row_group_size: int) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ImportError("Parquet export needs pyarrow: pip install 'otel-lightning[export]'") from exc
    schema = _parquet_schema()
    count = 0
    rows: list[dict[str, Any]] = []
    with pq.ParquetWriter(path, schema) as writer:
        for trajectory in trajectories:
            rows.extend(parquet_rows(trajectory))
            if len(rows) >= row_group_size:
                writer.write_table(pa.Table.from_pylist(rows, schema=schema))
                count += len(rows)
                rows = []
        if rows or count == 0:
            writer.write_table(pa.Table.from_pylist(rows, schema=schema))
            count += len(rows)
    return count
