"""Benchmark the SQLite store: span ingest and queue cycles.

Run: ``python bench/bench_store.py [--spans N] [--runs N] [--cycles N] [--dir DIR]``. Prints a table and
writes bench/results/store.json. Spans are realistic ~3.4 KiB chat-completion spans (bench/_fixtures.py:
``gen_ai.*`` attributes and JSON messages as the Traceloop openai instrumentation emits them, stamped with
rollout identity), made the way the server makes them: a protobuf export request of a batch's spans, decoded
by ``decode_encoded_spans``. Ingest times ``add_encoded_spans`` on those batches alone; conversion is timed
apart and shown in two columns: request -> encoded spans (``decode_encoded_spans``, the OTLP protobuf path)
and records -> encoded spans (``encode_span``, what OTLP JSON and ``add_spans`` callers pay on top). Rates are
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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._fixtures import llm_span_request  # noqa: E402
from otel_lightning.spans.encoded import EncodedSpan, decode_encoded_spans, encode_span  # noqa: E402
from otel_lightning.spans.otlp import OtlpFormat, decode_traces  # noqa: E402
from otel_lightning.store.base import Store  # noqa: E402
from otel_lightning.store.sqlite import SQLiteStore  # noqa: E402
from otel_lightning.types import AttemptStatus, Outcome, Task  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "store.json"


def make_requests(total: int, batch: int, seed: int = 0) -> list[bytes]:
    """``total // batch`` serialized protobuf export requests of ``batch`` LLM spans each (one batch each).

    Request ``i`` is drawn from seed ``seed + i``: span ids are unique within the list, and across lists
    whose seed ranges do not overlap.
    """
    return [llm_span_request(batch, seed=seed + i) for i in range(total // batch)]


class Converted(NamedTuple):
    """The encoded spans of some requests, and what making them cost."""

    batches: list[list[EncodedSpan]]
    """One batch per request, as the OTLP receiver hands it to ``add_encoded_spans``."""
    request_spans_per_s: float
    """Request -> encoded spans (``decode_encoded_spans``), as the server decodes an OTLP protobuf request."""
    record_spans_per_s: float
    """Records -> encoded spans (``encode_span``), the conversion OTLP JSON and ``add_spans`` callers pay."""


def convert(requests: Sequence[bytes]) -> Converted:
    """Decode each request into encoded spans, and time the two ways of making them.

    The timed conversions' results are dropped, as a server drops each request's spans once stored (keeping
    them all would time the heap's growth too); the batches returned are decoded again, untimed.
    """
    batches: list[list[EncodedSpan]] = []
    request_s = record_s = 0.0
    for body in requests:
        started = time.perf_counter()
        decode_encoded_spans(body)
        request_s += time.perf_counter() - started
        records = decode_traces(body, OtlpFormat.PROTOBUF).records
        started = time.perf_counter()
        [encode_span(r) for r in records]
        record_s += time.perf_counter() - started
        batches.append(decode_encoded_spans(body).records)
    spans = sum(len(batch) for batch in batches)
    return Converted(batches, spans / request_s, spans / record_s)


def encoded_size(span: EncodedSpan) -> int:
    """Bytes of a span's row: its strings and bytes, and 8 per integer."""
    return sum(len(v) if isinstance(v, str | bytes) else 8 for v in span if v is not None)


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall-clock and CPU seconds of one call (CPU time leaves out what other processes took)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def bench_ingest(directory: Path, total: int, batch: int, runs: int) -> dict[str, object]:
    requests = make_requests(total, batch)
    rates = [_ingest_once(directory / f"ingest-{batch}-{run}.db", requests) for run in range(runs)]
    wall, cpu, dups, request, record = (list(column) for column in zip(*rates, strict=True))
    return {
        "batch": batch,
        "spans": len(requests) * batch,
        "spans_per_s": statistics.median(wall),
        "spans_per_s_best": max(wall),
        "spans_per_cpu_s": statistics.median(cpu),
        "duplicate_spans_per_s": statistics.median(dups),
        "convert_request_spans_per_s": statistics.median(request),
        "convert_record_spans_per_s": statistics.median(record),
    }


def _ingest_once(path: Path, requests: Sequence[bytes]) -> tuple[float, float, float, float, float]:
    """Spans/s of one run: wall, per cpu-s, duplicates, and the two conversions."""
    return time_ingest(lambda: SQLiteStore(path), requests)


def time_ingest(
    open_store: Callable[[], Store], requests: Sequence[bytes]
) -> tuple[float, float, float, float, float]:
    """Spans/s of one run into the store ``open_store()`` gives: wall, per cpu-s, re-inserted duplicates, and
    the two conversions (request -> encoded, records -> encoded)."""
    # A server frees each request's spans; the bench holds all of them, which the garbage collector would
    # traverse again and again: keep them out of its way.
    gc.collect()
    gc.freeze()
    converted = convert(requests)
    batches = converted.batches
    total = sum(len(spans) for spans in batches)
    gc.freeze()
    store = open_store()
    stored: list[int] = []
    wall, cpu = _timed(lambda: stored.extend(store.add_encoded_spans(spans) for spans in batches))
    again = batches[: max(1, len(batches) // 4)]
    dup_wall, _ = _timed(lambda: stored.extend(store.add_encoded_spans(spans) for spans in again))
    assert sum(stored) == total, "every span is new once, and duplicates are skipped"
    store.close()
    gc.unfreeze()
    dups = sum(len(spans) for spans in again) / dup_wall
    return total / wall, total / cpu, dups, converted.request_spans_per_s, converted.record_spans_per_s


def bench_threads(directory: Path, total: int, threads: int) -> dict[str, object]:
    """Several threads calling add_encoded_spans at once, as a server's request threads might."""
    per_thread = [
        convert(make_requests(total // threads, 100, seed=t * total)).batches for t in range(threads)
    ]
    gc.collect()
    gc.freeze()
    store = SQLiteStore(directory / "threads.db")
    counts: list[int] = []  # the threads share it: list.append is atomic

    def write(batches: list[list[EncodedSpan]]) -> None:
        for spans in batches:
            counts.append(store.add_encoded_spans(spans))

    workers = [threading.Thread(target=write, args=(batches,)) for batches in per_thread]

    def run() -> None:
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    wall, cpu = _timed(run)
    stored = sum(counts)
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
    sample = make_requests(100, 100)[0]
    span_bytes, row_bytes = len(sample) / 100, encoded_size(decode_encoded_spans(sample).records[0])
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        ingest = [bench_ingest(Path(tmp), args.spans, batch, args.runs) for batch in (100, 512)]
        threads = bench_threads(Path(tmp), args.spans, 2)
        cycles = bench_cycles(Path(tmp), args.cycles)
    load = (load_before, os.getloadavg()[0])
    print(f"span ~{span_bytes:,.0f} bytes in a request, ~{row_bytes:,} in a row; ", end="")
    print(f"SQLite {sqlite3.sqlite_version}; Python {platform.python_version()}; ", end="")
    print(f"{os.cpu_count()} cpus, load average {load[0]:.1f} -> {load[1]:.1f}")
    print(f"{'add_encoded_spans':<34} {'convert to encoded spans/s':>27}")
    head = ("batch", "spans/s", "best", "per cpu-s", "dups", "request", "records")
    print("{:>5} {:>9} {:>9} {:>10} {:>9}   {:>11} {:>11}".format(*head))
    for r in ingest:
        print(
            "{:>5} {:>9,.0f} {:>9,.0f} {:>10,.0f} {:>9,.0f}   {:>11,.0f} {:>11,.0f}".format(
                r["batch"],
                r["spans_per_s"],
                r["spans_per_s_best"],
                r["spans_per_cpu_s"],
                r["duplicate_spans_per_s"],
                r["convert_request_spans_per_s"],
                r["convert_record_spans_per_s"],
            )
        )
    print(f"add_encoded_spans from {threads['threads']} threads, 100-span batches: ", end="")
    print(f"{threads['spans_per_s']:,.0f} spans/s ", end="")
    print(f"({threads['spans_per_cpu_s']:,.0f} per cpu-s)")
    print(f"enqueue+claim+complete: {cycles['cycles_per_s']:,.0f} cycles/s ", end="")
    print(f"({cycles['cycles_per_cpu_s']:,.0f} per cpu-s)")
    print(f"claim from a backlog:   {cycles['claims_per_s']:,.0f} claims/s")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "span_request_bytes": round(span_bytes),
        "span_row_bytes": row_bytes,
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
