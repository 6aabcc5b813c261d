"""The DSPy half of bench/bench_vs_dspy.py; runs inside the DSPy virtual environment, never imported there.

It reads the splits from a JSON file, talks to the task LLM through the counting proxy that the parent
started (``--api-base``), reads the proxy's call counter (``GET /_calls``) at every phase boundary, and
writes what it measured as JSON (``--out``). Modes:

- ``bfsrs``: the seed program (``dspy.Predict("ticket -> order_id")``) on the held-out split, then
  ``BootstrapFewShotWithRandomSearch`` with ``num_candidate_programs`` chosen from ``--budget`` (the LLM calls
  otel-lightning spent), then the optimized program on the held-out split.
- ``mipro``: ``MIPROv2(auto="light")`` with the same model as task and proposer model (the proposer with
  ``--proposer-max-tokens`` of room for an instruction); on success, the
  optimized program on the held-out split; on failure, the error and the stage it stopped in.

The reward is the demo's own (``otel_lightning.demo.dataset.parse_order_id`` on the predicted field, a
stdlib-only module found through PYTHONPATH). A prediction that raises (the adapter could not parse the
model's reply) scores 0 and is reported as a failure, as otel-lightning reports a failed rollout.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
import traceback
import urllib.request
from typing import Any

import dspy

from otel_lightning.demo.dataset import parse_order_id

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class _Stages(logging.Handler):
    """Remembers the last ``==> STEP ...`` line that MIPROv2 logged: the stage a failure happened in."""

    def __init__(self) -> None:
        super().__init__()
        self.stage = "setup"

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "==> STEP" in message:
            self.stage = message.strip().strip("=<> ").strip()


def proxy_calls(api_base: str) -> int:
    """The number of completion requests the counting proxy has forwarded so far."""
    root = api_base.rstrip("/").removesuffix("/v1")
    with _NO_PROXY.open(f"{root}/_calls", timeout=10) as response:
        return int(json.load(response)["calls"])


def examples(items: list[dict[str, str]]) -> list[dspy.Example]:
    return [dspy.Example(ticket=i["ticket"], order_id=i["order_id"]).with_inputs("ticket") for i in items]


def metric(example: dspy.Example, prediction: Any, trace: Any = None) -> float:
    """The demo's reward: 1.0 when the predicted order_id holds the right order number."""
    answer = getattr(prediction, "order_id", None)
    return 1.0 if parse_order_id(str(answer or "")) == example.order_id else 0.0


def evaluate(program: Any, items: list[dict[str, str]], api_base: str, threads: int) -> dict[str, Any]:
    """The program on ``items``: per-item rewards (``None`` where the prediction raised), calls, seconds."""
    calls = proxy_calls(api_base)
    started = time.monotonic()
    result = dspy.Evaluate(
        devset=examples(items),
        metric=metric,
        num_threads=threads,
        display_progress=False,
        display_table=False,
        max_errors=len(items) + 1,
    )(program)
    rewards: list[float | None] = []
    for _, prediction, score in result.results:
        parsed = "order_id" in (prediction.keys() if hasattr(prediction, "keys") else ())
        rewards.append(float(score) if parsed else None)
    return {
        "rewards": rewards,
        "calls": proxy_calls(api_base) - calls,
        "seconds": time.monotonic() - started,
    }


def run_bfsrs(args: argparse.Namespace, splits: dict[str, list[dict[str, str]]]) -> dict[str, Any]:
    """Seed on test; BFSRS one candidate program at a time (``restrict``) until the budget is spent; test.

    BFSRS's candidate programs are independent of each other (each depends only on its seed number), and
    ``compile(restrict={seed})`` builds and scores exactly that one: running them in BFSRS's own order and
    keeping the first best is BFSRS, with a stop after the candidate that brings the calls nearest to
    ``--budget`` (its ``num_candidate_programs`` cannot say how many calls a program will cost).
    """
    seed = evaluate(dspy.Predict("ticket -> order_id"), splits["test"], args.api_base, args.threads)
    save(args.out, {"seed": seed})  # what is measured survives a timeout of the rest
    calls = proxy_calls(args.api_base)
    started = time.monotonic()
    trainset, valset = examples(splits["train"]), examples(splits["val"])
    best: Any = None
    best_score = -math.inf
    scores: list[dict[str, Any]] = []
    for number in range(-3, 10_000):
        used = proxy_calls(args.api_base) - calls
        per_program = used / len(scores) if scores else 0
        if scores and used + per_program / 2 > args.budget:
            break
        optimizer = dspy.BootstrapFewShotWithRandomSearch(
            metric=metric,
            max_bootstrapped_demos=args.k,
            max_labeled_demos=args.k,
            num_candidate_programs=max(1, number + 1),
            num_threads=args.threads,
            max_errors=10**6,
        )
        program = optimizer.compile(
            dspy.Predict("ticket -> order_id"), trainset=trainset, valset=valset, restrict={number}
        )
        score = float(program.candidate_programs[0]["score"])
        scores.append(
            {"seed": number, "val_score": score, "calls_so_far": proxy_calls(args.api_base) - calls}
        )
        if score > best_score:  # strictly better, as BFSRS keeps the first of equal scores
            best, best_score = program, score
    compile_seconds = time.monotonic() - started
    compile_calls = proxy_calls(args.api_base) - calls
    out = {
        "seed": seed,
        "compile_calls": compile_calls,
        "compile_seconds": compile_seconds,
        "candidate_programs": len(scores),
        "val_scores": scores,
        "best_val_score": best_score,
        "demos": [
            {"ticket": d.get("ticket"), "order_id": d.get("order_id")}
            for p in best.predictors()
            for d in p.demos
        ],
    }
    save(args.out, out)
    out["optimized"] = evaluate(best, splits["test"], args.api_base, args.threads)
    return out


def run_mipro(args: argparse.Namespace, splits: dict[str, list[dict[str, str]]]) -> dict[str, Any]:
    stages = _Stages()
    logging.getLogger("dspy.teleprompt.mipro_optimizer_v2").addHandler(stages)
    # The proposer writes instructions, not five-digit answers: the same model with room for a paragraph.
    proposer = dspy.LM(
        f"openai/{args.model}",
        api_base=args.api_base,
        api_key="unused",
        temperature=args.temperature,
        max_tokens=args.proposer_max_tokens,
    )
    optimizer = dspy.MIPROv2(
        metric=metric,
        prompt_model=proposer,
        task_model=dspy.settings.lm,
        max_bootstrapped_demos=args.k,
        max_labeled_demos=args.k,
        auto="light",
        num_threads=args.threads,
        max_errors=10**6,
    )
    calls = proxy_calls(args.api_base)
    started = time.monotonic()
    out: dict[str, Any] = {}
    try:
        program = optimizer.compile(
            dspy.Predict("ticket -> order_id"),
            trainset=examples(splits["train"]),
            valset=examples(splits["val"]),
        )
    except Exception as exc:  # the finding is the failure itself: record it and where it happened
        out["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"
        out["failed_stage"] = stages.stage
        out["traceback_tail"] = traceback.format_exc().strip().splitlines()[-12:]
        program = None
    out["compile_seconds"] = time.monotonic() - started
    out["compile_calls"] = proxy_calls(args.api_base) - calls
    if program is not None:
        out["optimized"] = evaluate(program, splits["test"], args.api_base, args.threads)
        out["instruction"] = program.predictors()[0].signature.instructions
    return out


def save(path: str, out: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=("bfsrs", "mipro"), required=True)
    parser.add_argument("--api-base", required=True)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--data", required=True, help="JSON with train, val and test splits")
    parser.add_argument("--out", required=True)
    parser.add_argument("--budget", type=int, default=0, help="bfsrs: LLM calls to spend on compiling")
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--proposer-max-tokens", type=int, default=256)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with open(args.data, encoding="utf-8") as f:
        splits = json.load(f)
    lm = dspy.LM(
        f"openai/{args.model}",
        api_base=args.api_base,
        api_key="unused",
        temperature=args.temperature,
        max_tokens=args.max_tokens,
    )
    # Parse failures of a 135M model are expected outcomes (scored 0), not reasons to abort a run.
    dspy.configure(lm=lm, max_errors=10**6)
    started = time.monotonic()
    out = run_bfsrs(args, splits) if args.mode == "bfsrs" else run_mipro(args, splits)
    out["dspy_version"] = dspy.__version__
    out["seconds"] = time.monotonic() - started
    save(args.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
