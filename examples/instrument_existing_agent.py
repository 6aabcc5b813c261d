"""An existing openai-based agent made observable by one line, run over a few tasks, its traces read back.

``answer`` below is ordinary application code: it knows nothing about otel-lightning. The one line
``otel_lightning.instrument(url)`` makes every ``client.chat.completions.create`` it does an OpenTelemetry
span sent to the server; a ``Worker`` runs it over tasks (one root span per rollout, so each task's calls form
one tree), and the server rebuilds each rollout's span tree and trajectory.

    python -m examples.instrument_existing_agent                  # offline: a scripted model it starts itself
    python -m examples.instrument_existing_agent --base-url http://127.0.0.1:8080/v1 --model NAME

``--base-url`` defaults to ``$OPENAI_BASE_URL`` and ``--model`` to ``$OPENAI_MODEL``; the API key comes from
``$OPENAI_API_KEY`` (any value for a local server). Without a base URL the example serves a scripted model.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

import openai

import otel_lightning
from otel_lightning import ResourceVersion, Worker, serve
from otel_lightning.testing import ScriptedLLM

QUESTIONS = [
    {"question": "What is the capital of France?", "answer": "Paris"},
    {"question": "What is the capital of Japan?", "answer": "Tokyo"},
    {"question": "What is the capital of Italy?", "answer": "Rome"},
]


# --- the existing agent: plain openai code --------------------------------------------------------------
def answer(client: openai.OpenAI, model: str, question: str) -> str:
    """Ask the model a question; answer in a word."""
    reply = client.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": "Answer with one word."},
            {"role": "user", "content": question},
        ],
        temperature=0,
        max_tokens=16,
    )
    return (reply.choices[0].message.content or "").strip()


# --- the scripted model used when no endpoint is given ---------------------------------------------------
def scripted_model(request: dict[str, Any]) -> str:
    question = str(request["messages"][-1]["content"])
    for item in QUESTIONS:
        if item["question"] == question:
            return item["answer"]
    return "unknown"


@contextlib.contextmanager
def llm_endpoint(base_url: str | None, model: str | None) -> Iterator[tuple[str, str]]:
    """The endpoint given, or a scripted model started for the duration."""
    if base_url:
        yield base_url, model or "default"
        return
    with ScriptedLLM(scripted_model) as llm:
        yield llm.base_url, model or llm.model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL"))
    parser.add_argument("--model", default=os.environ.get("OPENAI_MODEL"))
    args = parser.parse_args(argv)

    with llm_endpoint(args.base_url, args.model) as (base_url, model), serve() as lightning:
        otel_lightning.instrument(lightning.url)  # the one line: every openai call below becomes a span

        client = openai.OpenAI(base_url=base_url, api_key=os.environ.get("OPENAI_API_KEY", "unused"))

        def agent(task: dict[str, Any], resources: ResourceVersion) -> float:
            # The Worker's entry point: call the existing code, return a reward.
            said = answer(client, model, task["question"])
            return 1.0 if task["answer"].lower() in said.lower() else 0.0

        worker = Worker(agent, lightning.url, concurrency=2, claim_wait_s=0.5)
        thread = threading.Thread(target=worker.run, name="example-worker", daemon=True)
        thread.start()
        try:
            rollouts = lightning.enqueue(QUESTIONS)
            # complete=True: wait until every span each attempt reported has reached the server.
            finished = lightning.wait(rollouts, timeout_s=60, complete=True)
        finally:
            worker.stop()
            thread.join(10)

        for rollout in finished:
            trajectory = lightning.trajectory(rollout.rollout_id)
            print(f"rollout {rollout.rollout_id}: {rollout.status.value}, reward {rollout.reward}")
            print(lightning.span_tree(rollout.rollout_id).render())
            for step in trajectory.steps:
                asked = step.state[-1].content if step.state else ""
                print(f"  step {step.index}: {asked!r} -> {step.llm_call.completion!r}")
        solved = sum(1 for r in finished if r.reward == 1.0)
        print(f"{solved}/{len(finished)} answered correctly")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
