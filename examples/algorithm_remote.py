"""Run an optimization algorithm against a long-running otel-lightning server, with ``connect()``.

    otel-lightning serve --db runs.db                                       # terminal 1: the server
    otel-lightning worker my_agent:agent --server http://127.0.0.1:8318     # terminal 2 (and more): workers
    python examples/algorithm_remote.py --server http://127.0.0.1:8318 --experiment sentiment \\
        --algorithm bootstrap_fewshot --run fewshot-1 --train train.jsonl --val val.jsonl

``train.jsonl`` and ``val.jsonl`` hold one task input (a JSON object) per line, as the agent receives them.
The experiment needs a published seed version (its prompt template, LLM endpoint, ...). APO also needs an
optimizer LLM: ``--optimizer-url http://host:port/v1 --optimizer-model NAME`` (its API key, if any, from the
environment variable named by ``--optimizer-key-env``).

The run's state lives in the server: if this script dies (Ctrl-C, a crash, a reboot), start it again with the
same ``--run`` and it resumes where it stopped, reusing the rollouts that exist; once finished, it prints the
recorded result. Use a new ``--run`` name to start over. During a run the experiment's latest version may be
a candidate; the result's ``best_version`` is the winner (published last, so it is also the latest then).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from otel_lightning import LLMEndpoint, connect
from otel_lightning.algorithms import ProgressEvent, available_algorithms, load_algorithm


def read_jsonl(path: str) -> list[Any]:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def show(event: ProgressEvent) -> None:
    print(
        f"[{event.run}] {event.kind.value:<9} {event.message}  ({event.rollouts_used} rollouts)", flush=True
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--server", default=None, help="server URL (default: $OTEL_LIGHTNING_SERVER)")
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--algorithm", required=True, help=f"one of {sorted(available_algorithms())}")
    parser.add_argument("--run", required=True, help="the run's name; the same name resumes it")
    parser.add_argument("--train", help="JSONL of training task inputs")
    parser.add_argument("--val", required=True, help="JSONL of validation task inputs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--optimizer-url", help="APO: the optimizer LLM's OpenAI-compatible base URL")
    parser.add_argument("--optimizer-model", default="gpt-4o-mini")
    parser.add_argument("--optimizer-key-env", default=None, help="APO: env var holding its API key")
    parser.add_argument("--api-token", default=None, help="bearer token of the server, if it needs one")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    cls = load_algorithm(args.algorithm)
    options: dict[str, Any] = {
        "name": args.run,
        "val": read_jsonl(args.val),
        "seed": args.seed,
        "progress": show,
    }
    if cls.algorithm_name in ("bootstrap_fewshot", "apo", "evolutionary_search"):
        if not args.train:
            parser.error(f"{cls.algorithm_name} needs --train")
        options["train"] = read_jsonl(args.train)
    if cls.algorithm_name == "apo":
        if not args.optimizer_url:
            parser.error("apo needs --optimizer-url")
        options["optimizer"] = LLMEndpoint(args.optimizer_url, args.optimizer_model, args.optimizer_key_env)
    if cls.algorithm_name == "evolutionary_search":
        parser.error(
            "evolutionary_search needs a mutation operator: call it from Python (docs/algorithms.md)"
        )
    algorithm = cls(**options)

    with connect(args.server, experiment=args.experiment, api_token=args.api_token) as lightning:
        result = algorithm.run(lightning)
        best = lightning.resources(result.best_version)
    print(f"best candidate {result.best_candidate}, published as version {result.best_version}")
    print(f"  score    {result.best_score}")
    print(f"  baseline {result.baseline_score}")
    print(f"  {result.rollouts_used} rollouts, {len(result.history)} candidates")
    print(json.dumps({name: r.to_json() for name, r in best.resources.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
