"""A small algorithm written over span trees: find LLM calls cut off by ``max_tokens``, and raise it.

It runs self-contained: an embedded server (``serve()``), a worker in this process, and a scripted
OpenAI-compatible model that writes long answers. Run it with ``python -m examples.span_tree_algorithm``.
"""

from __future__ import annotations

import threading
from typing import Any

import openai

from otel_lightning import PromptTemplate, ResourceVersion, SamplingParams, Worker, serve
from otel_lightning.client.lightning import Lightning
from otel_lightning.resources import LLMEndpoint
from otel_lightning.testing import ScriptedLLM, ScriptedReply


def model(request: dict[str, Any]) -> ScriptedReply:
    """A scripted model whose answers are 40 words long, cut off when max_tokens is lower."""
    words = ["word"] * 40
    limit = request.get("max_tokens") or 1000
    return ScriptedReply(" ".join(words[:limit]), finish_reason="length" if limit < len(words) else "stop")


def agent(task: dict[str, Any], resources: ResourceVersion) -> float:
    endpoint = resources["llm"]
    assert isinstance(endpoint, LLMEndpoint)
    client = openai.OpenAI(base_url=endpoint.base_url, api_key="unused")
    reply = client.chat.completions.create(
        model=endpoint.model,
        messages=[{"role": "user", "content": resources.prompt("prompt").render(**task)}],
        **resources.sampling().as_openai_kwargs(),
    )
    return 1.0 if reply.choices[0].finish_reason == "stop" else 0.0


def truncated_share(lightning: Lightning, rollout_ids: list[str]) -> float:
    """The share of LLM calls that stopped at max_tokens, read from each rollout's span tree."""
    calls = [call for rollout_id in rollout_ids for call in lightning.span_tree(rollout_id).llm_calls()]
    return sum("length" in call.finish_reasons for call in calls) / max(len(calls), 1)


def main() -> None:
    with ScriptedLLM(model) as llm, serve() as lightning:
        worker = Worker(agent, lightning.url, concurrency=4, claim_wait_s=0.5)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        current = lightning.publish(
            {
                "prompt": PromptTemplate("Explain {topic} in detail."),
                "sampling": SamplingParams(max_tokens=16),
                "llm": LLMEndpoint(llm.base_url, "scripted"),
            }
        )
        topics = [{"topic": t} for t in ("tracing", "spans", "baggage", "OTLP", "leases", "rewards")]
        for _ in range(4):
            rollouts = lightning.run(topics, timeout_s=60)
            share = truncated_share(lightning, [r.rollout_id for r in rollouts])
            tree = lightning.span_tree(rollouts[0].rollout_id)
            print(f"version {current.version}: {share:.0%} of LLM calls truncated\n{tree.render()}")
            if share == 0:
                break
            sampling = current.sampling()
            raised = SamplingParams(max_tokens=2 * (sampling.max_tokens or 16))
            current = lightning.publish(
                {**current.resources, "sampling": raised},
                expected_version=current.version,
                metadata={"why": f"{share:.0%} of calls hit max_tokens"},
            )
        worker.stop()
        thread.join(10)
        print(f"final version {current.version}: max_tokens={current.sampling().max_tokens}")


if __name__ == "__main__":
    main()
