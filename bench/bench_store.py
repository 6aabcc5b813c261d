"""Benchmark the SQLite store: span ingest and queue cycles.

Run: ``python bench/bench_store.py [--spans N] [--runs N] [--cycles N] [--dir DIR]``. Prints a table and
writes bench/results/store.json. Spans are realistic ~3 KiB chat-completion spans as the Traceloop openai
instrumentation emits them (GenAI semconv JSON messages), stamped with rollout identity. Ingest is measured
with each JSON encoder the store can use (the standard library, and orjson when installed). Rates are
wall-clock; "per cpu-s" divides by this process's CPU time instead, which leaves out time taken by other
processes on a shared machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from otel_lightning.spans.records import SpanKind, SpanRecord, StatusCode
from otel_lightning.store import rows
from otel_lightning.store.base import SpanQuery
from otel_lightning.store.rows import spans_to_rows
from otel_lightning.store.sqlite import SQLiteStore
from otel_lightning.types import AttemptStatus, Outcome, Task

RESULTS = Path(__file__).parent / "results" / "store.json"

ENCODERS: dict[str, Callable[[object], str]] = {"stdlib": rows._encode_stdlib}
if rows._orjson is not None:
    ENCODERS["orjson"] = rows._encode_orjson

_SYSTEM = (
    "You are a careful assistant that answers questions about a customer's orders. Use the tools when you "
    "need facts; never invent order numbers. Answer in at most three sentences and cite the order id. "
) * 4
_USER = (
    "Where is my order 4711? I ordered a blue kettle two weeks ago and the tracking page shows nothing. " * 6
)
_ANSWER = (
    "Order 4711 (blue kettle) left our warehouse on Monday and is with the carrier; expect it Thursday. " * 2
)

RESOURCE = {
    "service.name": "support-agent",
    "service.version": "1.4.2",
    "telemetry.sdk.language": "python",
    "telemetry.sdk.name": "opentelemetry",
    "telemetry.sdk.version": "1.45.2",
    "host.name": "worker-07",
    "process.pid": 41817,
}


def llm_span(trace_id: str, parent: str, i: int, rollout_id: str, attempt_id: str) -> SpanRecord:
    """One chat-completion span of about 3 KiB."""
    start = 1_760_000_000_000_000_000 + i * 1_000_000
    messages = [
        {"role": "system", "parts": [{"type": "text", "content": _SYSTEM}]},
        {"role": "user", "parts": [{"type": "text", "content": _USER + str(i)}]},
    ]
    output = [{"role": "assistant", "parts": [{"type": "text", "content": _ANSWER}], "finish_reason": "stop"}]
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.request.max_tokens": 256,
        "gen_ai.request.temperature": 0.7,
        "gen_ai.request.top_p": 1.0,
        "gen_ai.response.id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.response.finish_reasons": ["stop"],
        "gen_ai.usage.input_tokens": 412,
        "gen_ai.usage.output_tokens": 38,
        "gen_ai.usage.total_tokens": 450,
        "gen_ai.input.messages": json.dumps(messages),
        "gen_ai.output.messages": json.dumps(output),
        "llm.is_streaming": False,
        "server.address": "api.openai.com",
        "server.port": 443,
        "otel_lightning.rollout.id": rollout_id,
        "otel_lightning.attempt.id": attempt_id,
        "otel_lightning.experiment": "bench",
    }
    return SpanRecord(
        trace_id=trace_id,
        span_id=uuid.uuid4().hex[:16],
        parent_span_id=parent,
        name="openai.chat",
        kind=SpanKind.CLIENT,
        start_ns=start,
        end_ns=start + 850_000_000,
        attributes=attributes,
        status_code=StatusCode.OK,
        resource=RESOURCE,
        scope_name="opentelemetry.instrumentation.openai.v1",
        scope_version="0.62.4",
        rollout_id=rollout_id,
        attempt_id=attempt_id,
        experiment="bench",
    )


def make_batches(total: int, batch: int) -> list[list[SpanRecord]]:
    """Batches as one OTLP request each: the spans of a few attempts, sharing one resource."""
    batches = []
    for b in range(total // batch):
        spans = []
        for i in range(batch):
            if i % 20 == 0:  # a new attempt every 20 LLM calls
                trace_id, root = uuid.uuid4().hex, uuid.uuid4().hex[:16]
                rollout_id, attempt_id = uuid.uuid4().hex, uuid.uuid4().hex
            spans.append(llm_span(trace_id, root, b * batch + i, rollout_id, attempt_id))
        batches.append(spans)
    return batches


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall-clock and CPU seconds of one call (CPU time leaves out what other processes took)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def bench_ingest(directory: Path, total: int, batch: int, runs: int, encoder: str) -> dict[str, object]:
    rows._encode_lenient = ENCODERS[encoder]
    wall_rates, cpu_rates, convert_rates, dup_rates = [], [], [], []
    for run in range(runs):
        batches = make_batches(total, batch)
        total = len(batches) * batch
        # A server frees each request's spans; the bench holds all of them, which the garbage collector
        # would traverse again and again: keep them out of its way.
        gc.collect()
        gc.freeze()
        wall, _ = _timed(lambda: [spans_to_rows(spans) for spans in batches])  # noqa: B023
        convert_rates.append(total / wall)
        store = SQLiteStore(directory / f"ingest-{encoder}-{batch}-{run}.db")
        stored: list[int] = []
        wall, cpu = _timed(lambda: stored.extend(store.add_spans(spans) for spans in batches))  # noqa: B023
        wall_rates.append(total / wall)
        cpu_rates.append(total / cpu)
        again = batches[: max(1, len(batches) // 4)]
        wall, _ = _timed(lambda: stored.extend(store.add_spans(spans) for spans in again))  # noqa: B023
        dup_rates.append(len(again) * batch / wall)
        assert sum(stored) == total, "every span is new once, and duplicates are skipped"
        store.close()
        gc.unfreeze()
    return {
        "encoder": encoder,
        "batch": batch,
        "spans": total,
        "spans_per_s": statistics.median(wall_rates),
        "spans_per_s_best": max(wall_rates),
        "spans_per_cpu_s": statistics.median(cpu_rates),
        "convert_spans_per_s": statistics.median(convert_rates),
        "duplicate_spans_per_s": statistics.median(dup_rates),
    }


def bench_threads(directory: Path, total: int, threads: int) -> dict[str, object]:
    """Several threads calling add_spans at once, as a server's request threads might (best JSON encoder)."""
    rows._encode_lenient = list(ENCODERS.values())[-1]
    per_thread = [make_batches(total // threads, 100) for _ in range(threads)]
    gc.collect()
    gc.freeze()
    store = SQLiteStore(directory / "threads.db")
    workers = [
        threading.Thread(target=lambda b=batches: [store.add_spans(spans) for spans in b])
        for batches in per_thread
    ]

    def run() -> None:
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    wall, cpu = _timed(run)
    stored = len(store.get_spans(SpanQuery(limit=10**7)))
    store.close()
    gc.unfreeze()
    return {
        "threads": threads,
        "spans": stored,
        "spans_per_s": stored / wall,
        "spans_per_cpu_s": stored / cpu,
    }


def bench_cycles(directory: Path, cycles: int) -> dict[str, object]:
    store = SQLiteStore(directory / "cycles.db")
    store.enqueue([Task(input={"backlog": i}, experiment="other") for i in range(cycles)])
    done = Outcome(AttemptStatus.SUCCEEDED, reward=1.0, span_count=12)

    def cycle() -> None:
        for i in range(cycles):
            store.enqueue([Task(input={"question": f"q{i}", "answer": i})])
            claim = store.claim("bench-worker", f"req-{i}", ["default"], lease_s=60)
            assert claim is not None
            store.complete(claim.attempt.attempt_id, done)

    def claim_backlog() -> None:
        for i in range(cycles):
            assert store.claim("bench-worker", f"backlog-{i}", lease_s=60) is not None

    cycle_wall, cycle_cpu = _timed(cycle)
    claim_wall, _ = _timed(claim_backlog)
    store.close()
    return {
        "cycles": cycles,
        "cycles_per_s": cycles / cycle_wall,
        "cycles_per_cpu_s": cycles / cycle_cpu,
        "claims_per_s": cycles / claim_wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=30_720, help="spans per ingest run")
    parser.add_argument("--runs", type=int, default=3, help="runs per batch size (median reported)")
    parser.add_argument("--cycles", type=int, default=2000, help="enqueue+claim+complete cycles")
    parser.add_argument("--dir", type=Path, default=None, help="where the databases go (a temp dir)")
    args = parser.parse_args()
    size = sum(len(str(v)) for v in spans_to_rows([llm_span("0" * 32, "1" * 16, 0, "r" * 32, "a" * 32)])[0])
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        ingest = [
            bench_ingest(Path(tmp), args.spans, batch, args.runs, encoder)
            for encoder in ENCODERS
            for batch in (100, 512)
        ]
        threads = bench_threads(Path(tmp), args.spans, 2)
        cycles = bench_cycles(Path(tmp), args.cycles)
    load = (load_before, os.getloadavg()[0])
    print(
        f"span row ~{size} bytes; SQLite {sqlite3.sqlite_version}; Python {platform.python_version()}; ",
        end="",
    )
    print(f"{os.cpu_count()} cpus, load average {load[0]:.1f} -> {load[1]:.1f}")
    head = ("add_spans", "batch", "spans/s", "best", "per cpu-s", "convert", "dups")
    print("{:<18} {:>5} {:>9} {:>9} {:>10} {:>9} {:>9}".format(*head))
    for r in ingest:
        print(
            "{:<18} {:>5} {:>9,.0f} {:>9,.0f} {:>10,.0f} {:>9,.0f} {:>9,.0f}".format(
                f"JSON by {r['encoder']}",
                r["batch"],
                r["spans_per_s"],
                r["spans_per_s_best"],
                r["spans_per_cpu_s"],
                r["convert_spans_per_s"],
                r["duplicate_spans_per_s"],
            )
        )
    print(f"add_spans from {threads['threads']} threads, 100-span batches: ", end="")
    print(f"{threads['spans_per_s']:,.0f} spans/s ", end="")
    print(f"({threads['spans_per_cpu_s']:,.0f} per cpu-s)")
    print(f"enqueue+claim+complete: {cycles['cycles_per_s']:,.0f} cycles/s ", end="")
    print(f"({cycles['cycles_per_cpu_s']:,.0f} per cpu-s)")
    print(f"claim from a backlog:   {cycles['claims_per_s']:,.0f} claims/s")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "span_row_bytes": size,
        "sqlite": sqlite3.sqlite_version,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "load_average": load,
        "argv": sys.argv[1:],
        "ingest": ingest,
        "ingest_threads": threads,
        "queue": cycles,
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
