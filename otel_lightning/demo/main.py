"""``otel-lightning demo``: optimize a real agent on a real local LLM, offline, and show the before and after.

1. Start the embedded server (SQLite under ``--out``), the local LLM (SmolLM2 in llama.cpp servers) and a
   worker running the bundled agent (otel_lightning/demo/agent.py) on the bundled dataset.
2. Measure the seed resource version on the held-out test split.
3. Optimize: bootstrap few-shot demonstrations (from successful trajectories, topped up with labelled
   training examples), then search sampling parameters, each scored on the validation split.
4. Measure the best version on the held-out split, print a before/after table, and say where the
   trajectories are.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otel_lightning.algorithms.base import AlgorithmResult, ProgressEvent
from otel_lightning.algorithms.evaluate import evaluate
from otel_lightning.algorithms.fewshot import BootstrapFewShot
from otel_lightning.algorithms.sampling import SamplingSearch
from otel_lightning.algorithms.score import Score
from otel_lightning.client.lightning import Lightning, serve
from otel_lightning.client.worker import Worker
from otel_lightning.demo import dataset
from otel_lightning.demo.agent import extract_order_id
from otel_lightning.resources import LLMEndpoint, PromptTemplate, Resource, SamplingParams, WorkflowConfig

logger = logging.getLogger(__name__)

SEED_SYSTEM = "You help the support team with tickets."
SEED_PROMPT = "Ticket: {ticket}\nWhat is the order?"
SEED_SAMPLING = SamplingParams(temperature=1.0, max_tokens=16)


@dataclass(frozen=True, slots=True)
class DemoResult:
    """What the demo measured."""

    before: Score
    after: Score
    seed_version: int
    best_version: int
    llm_calls: int
    seconds: float
    fewshot: AlgorithmResult
    sampling: AlgorithmResult

    def to_json(self) -> dict[str, Any]:
        return {
            "before": self.before.to_json(),
            "after": self.after.to_json(),
            "improvement_points": round(100 * (self.after.mean - self.before.mean), 1),
            "seed_version": self.seed_version,
            "best_version": self.best_version,
            "llm_calls": self.llm_calls,
            "seconds": round(self.seconds, 1),
            "fewshot": self.fewshot.to_json(),
            "sampling": self.sampling.to_json(),
        }


def seed_resources(endpoints: list[LLMEndpoint]) -> dict[str, Resource]:
    """The agent's starting point: a vague prompt, no demonstrations, a high temperature."""
    return {
        "system": PromptTemplate(SEED_SYSTEM),
        "prompt": PromptTemplate(SEED_PROMPT),
        "sampling": SEED_SAMPLING,
        "llm": endpoints[0],
        "replicas": WorkflowConfig({"base_urls": [e.base_url for e in endpoints]}),
    }


def optimize(
    lightning: Lightning, endpoints: list[LLMEndpoint], *, run: str, progress: Any = None
) -> DemoResult:
    """Measure the seed, optimize, measure the best; all through ``lightning`` (a worker must be running)."""
    started = time.monotonic()
    splits = dataset.load()
    seed = lightning.publish(seed_resources(endpoints), metadata={"note": "demo seed"})
    before = evaluate(lightning, seed.version, splits.test, run=run, stage="test", candidate="seed")
    logger.info("seed version %d on the held-out split: %s", seed.version, before)
    fewshot = BootstrapFewShot(
        name=f"{run}-fewshot",
        train=splits.train,
        val=splits.val,
        k=3,
        num_candidates=5,
        demos_resource="demos",
        label_field="order_id",
        progress=progress,
    ).run(lightning)
    sampling = SamplingSearch(
        name=f"{run}-sampling",
        val=splits.val,
        temperature=(0.0, 0.3, 0.7, 1.0),
        progress=progress,
    ).run(lightning)
    after = evaluate(lightning, sampling.best_version, splits.test, run=run, stage="test", candidate="best")
    calls = len(lightning.rollouts(limit=100_000))
    return DemoResult(
        before,
        after,
        seed.version,
        sampling.best_version,
        calls,
        time.monotonic() - started,
        fewshot,
        sampling,
    )


def _table(result: DemoResult) -> str:
    def row(name: str, version: int, score: Score) -> str:
        return (
            f"  {name:<10} v{version:<4} {100 * score.mean:6.1f}%   "
            f"[{100 * score.ci_low:5.1f}, {100 * score.ci_high:5.1f}]   "
            f"n={score.n}  failures={score.failures}"
        )

    return "\n".join(
        [
            "held-out accuracy (95% interval)",
            row("before", result.seed_version, result.before),
            row("after", result.best_version, result.after),
            f"  improvement: {100 * (result.after.mean - result.before.mean):+.1f} points; "
            f"{result.llm_calls} LLM calls in {result.seconds:.0f} s",
        ]
    )


def main(args: argparse.Namespace) -> int:
    """Run the demo; 0 on success."""
    from otel_lightning.llm.local import LocalLLMPool, LocalModel, smollm2_path

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    db = out / "demo.db"
    for stale in out.glob("demo.db*"):
        stale.unlink()
    bar = _progress_bar()
    with (
        LocalLLMPool(
            LocalModel(smollm2_path()), processes=args.llm_processes, log_dir=out / "llm-logs"
        ) as pool,
        serve(db, experiment="demo") as lightning,
    ):
        worker = Worker(extract_order_id, lightning.url, concurrency=args.llm_processes, claim_wait_s=1)
        thread = threading.Thread(target=worker.run, name="demo-worker", daemon=True)
        thread.start()
        try:
            result = optimize(lightning, pool.endpoints, run="demo", progress=bar)
        finally:
            worker.stop()
            thread.join(60)
    (out / "summary.json").write_text(json.dumps(result.to_json(), indent=2))
    print(_table(result))
    print(
        f"\nThe trajectories are in {db}. Look at them with:\n"
        f"  otel-lightning serve --db {db}\n"
        f"  curl 'http://127.0.0.1:8318/api/v1/rollouts?experiment=demo&limit=5'\n"
        f"  curl 'http://127.0.0.1:8318/api/v1/rollouts/<rollout_id>/tree'\n"
        f"  otel-lightning export --experiment demo --format sft --out demo.jsonl --min-reward 1\n"
        f"Summary: {out / 'summary.json'}"
    )
    return 0


def _progress_bar() -> Any:
    """A progress callback printing one line per algorithm event (plain lines, so CI logs stay readable)."""

    def show(event: ProgressEvent) -> None:
        print(f"[{event.run}] {event.kind.value}: {event.message}", flush=True)

    return show
