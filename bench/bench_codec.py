"""Decode throughput of the OTLP codec on one core: spans/s for realistic ~3.4 KiB LLM spans.

    python bench/bench_codec.py [--quick]

Cases, for 100- and 512-span requests: protobuf -> encoded spans (``decode_encoded_spans``, what the server
does with a protobuf request), protobuf and JSON -> span records (``decode_traces``; the server decodes JSON
this way, then encodes the records), each uncompressed and gzip'd (decompression included); protobuf parsing
alone for reference; and reading back, encoded spans -> records (``record_of``, what a span query pays per
span). Single-threaded, so one core. Each case runs repeatedly for ``--seconds``; the table shows the best
and the median call (a shared machine's load moves the median more than the best; the load average is
recorded).
Writes bench/results/codec.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import google.protobuf  # noqa: E402
from google.protobuf.internal import api_implementation  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402

from bench._fixtures import llm_span_request, llm_span_request_json  # noqa: E402
from otel_lightning.spans.encoded import EncodedSpan, decode_encoded_spans, record_of  # noqa: E402
from otel_lightning.spans.otlp import OtlpFormat, decode_traces, decompress  # noqa: E402

CAP = 64 << 20


def pin(cpu: int | None) -> str:
    # Decoding is single-threaded: it uses one core either way; pinning only stops migrations.
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return "not pinned"
    os.sched_setaffinity(0, {cpu})
    return f"pinned to cpu {cpu}"


def decode_gzipped(body: bytes, fmt: OtlpFormat) -> object:
    return decode_traces(decompress(body, "gzip", CAP), fmt)


def decode_encoded_gzipped(body: bytes) -> object:
    return decode_encoded_spans(decompress(body, "gzip", CAP))


def read_back(spans: list[EncodedSpan]) -> object:
    return [record_of(span) for span in spans]


def measure(work: Callable[[], object], seconds: float) -> list[float]:
    """Seconds per call, for every call made in about ``seconds`` (after one warm-up call)."""
    work()
    timings: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(timings) < 5:
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="0.2 s per case, for a smoke run")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per case")
    parser.add_argument("--pin", type=int, metavar="CPU", help="pin the process to this cpu")
    args = parser.parse_args()
    seconds = 0.2 if args.quick else args.seconds
    pinning = pin(args.pin)
    load_before = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None

    rows = []
    for n_spans in (100, 512):
        bodies = {
            OtlpFormat.PROTOBUF: llm_span_request(n_spans, seed=n_spans),
            OtlpFormat.JSON: llm_span_request_json(n_spans, seed=n_spans),
        }
        protobuf = bodies[OtlpFormat.PROTOBUF]
        zipped = gzip.compress(protobuf, 6)
        encoded = decode_encoded_spans(protobuf).records
        # A stored row's bytes: the two messages and the index columns' text (8 per integer).
        row_bytes = sum(
            len(v) if isinstance(v, str | bytes) else 8 for s in encoded for v in s if v is not None
        )
        cases: list[tuple[str, str, int, Callable[[], object]]] = [
            (
                "protobuf (ParseFromString only)",
                "",
                len(protobuf),
                partial(ExportTraceServiceRequest.FromString, protobuf),
            ),
            ("protobuf -> encoded spans", "", len(protobuf), partial(decode_encoded_spans, protobuf)),
            ("protobuf -> encoded spans", "gzip", len(zipped), partial(decode_encoded_gzipped, zipped)),
        ]
        for fmt, body in bodies.items():
            zipped = gzip.compress(body, 6)
            name = f"{fmt.value} -> records"
            cases.append((name, "", len(body), partial(decode_traces, body, fmt)))
            cases.append((name, "gzip", len(zipped), partial(decode_gzipped, zipped, fmt)))
        cases.append(("encoded spans -> records (record_of)", "", row_bytes, partial(read_back, encoded)))
        for name, encoding, size, work in cases:
            timings = measure(work, seconds)
            best, median = min(timings), statistics.median(timings)
            rows.append(
                {
                    "spans_per_request": n_spans,
                    "format": name,
                    "encoding": encoding or "identity",
                    "body_bytes": size,
                    "bytes_per_span": round(size / n_spans),
                    "spans_per_s_best": round(n_spans / best),
                    "spans_per_s_median": round(n_spans / median),
                    "ms_per_request_best": round(best * 1e3, 3),
                    "ms_per_request_median": round(median * 1e3, 3),
                    "calls": len(timings),
                }
            )
            row = rows[-1]
            print(
                f"{n_spans:>5}  {name:<36} {row['encoding']:<9} {row['bytes_per_span']:>6} B/span "
                f"{row['spans_per_s_best']:>9,} best {row['spans_per_s_median']:>9,} median spans/s",
                flush=True,
            )

    result = {
        "benchmark": "codec",
        "what": "OTLP decode and record_of read-back, spans/s on one core (gzip rows include decompression)",
        "python": platform.python_version(),
        "protobuf": google.protobuf.__version__,
        "protobuf_backend": api_implementation.Type(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu_count": os.cpu_count(),
        "pinning": pinning,
        "load_average_1m_before": load_before,
        "load_average_1m_after": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "seconds_per_case": seconds,
        "rows": rows,
    }
    out = ROOT / "bench" / "results" / "codec.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
