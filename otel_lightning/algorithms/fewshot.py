"""Bootstrap few-shot: demonstrations taken from the agent's own successful trajectories.

1. Run the seed version on the train split.
2. From each successful rollout (reward at least ``success_threshold``), read the real prompt and
   completion of its last LLM call from the trajectory and format a demonstration (by default
   ``Input: ...\\nOutput: ...``: the task input's text and the completion).
3. Draw ``num_candidates`` distinct random subsets of ``k`` demonstrations (seeded), insert each into the
   prompt template, publish each as a candidate version.
4. Evaluate the seed and every candidate on the same validation items at once, and publish the best.

Demonstrations are escaped (``{`` -> ``{{``) so that braces in them never become placeholders: every
candidate keeps exactly the seed template's placeholders. Needs no optimizer LLM.

Two options matter for small models. ``label_field`` tops the demo pool up with labelled train items when the
seed succeeds too rarely to bootstrap from (a seed that never succeeds still gets demonstrations), and
``demos_resource`` stores the demonstrations as a config resource of chat turns instead of inline text, for
agents that replay them as earlier messages.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from otel_lightning.algorithms.base import (
    Algorithm,
    AlgorithmResult,
    callable_name,
    check_callback,
    check_dataset,
    dataset_digest,
)
from otel_lightning.algorithms.evaluate import Evaluation, Metric
from otel_lightning.algorithms.feedback import escape_braces, examples, input_text
from otel_lightning.algorithms.run_state import SEED, RunContext, best_of
from otel_lightning.exceptions import ResourceError, ValidationError
from otel_lightning.resources import JSON, PromptTemplate, Resource, WorkflowConfig
from otel_lightning.spans.llm import LLMCall

if TYPE_CHECKING:
    from otel_lightning.client.lightning import Lightning

logger = logging.getLogger(__name__)


class DemoFormatter(Protocol):
    """Formats one demonstration from a task input and the LLM call that answered it well."""

    def __call__(self, task_input: JSON, call: LLMCall, /) -> str: ...


@dataclass(frozen=True, slots=True)
class _Demo:
    """One demonstration: as inline text for the template, and as a chat turn (user message, answer)."""

    item: int
    text: str
    user: str
    output: str
    labeled: bool


class BootstrapFewShot(Algorithm):
    """Few-shot demonstrations bootstrapped from successful trajectories, the best subset chosen on val.

    Args:
        name: the run's name (see :class:`~otel_lightning.algorithms.base.Algorithm` for the common options).
        train: task inputs the seed version runs on to collect demonstrations.
        val: task inputs every candidate is scored on.
        prompt: name of the prompt-template resource to edit.
        k: demonstrations per candidate.
        num_candidates: demo subsets to try.
        input_field: the task input's field shown as a demo's input (by the default format).
        demo_format: ``demo_format(task_input, llm_call) -> str``; default ``Input: ...\\nOutput: ...``.
        header: text placed before the demonstrations.
        success_threshold: the reward a rollout needs to give a demonstration.
        demos_resource: when set, demonstrations are not written into the template: each candidate sets this
            resource to a config ``{"demos": [{"input": ..., "output": ...}]}`` (the user message the call was
            sent and its completion), for agents that replay them as earlier chat turns, which small chat
            models follow far better than inline examples.
        label_field: the task input's field holding the right answer. When set, labelled demonstrations from
            train items top up the pool whenever fewer than ``labeled_pool`` were bootstrapped (DSPy's
            labelled demos): a seed that never succeeds still gets demonstrations. Their input is the prompt
            template rendered with the task input's fields.
        labeled_pool: the pool size labelled demonstrations fill up to (default ``2 * k``).
        metric: ``metric(rollout) -> reward | None`` (default: the rollout's reward; failures score 0).
    """

    algorithm_name = "bootstrap_fewshot"

    def __init__(
        self,
        *,
        name: str,
        train: Sequence[JSON],
        val: Sequence[JSON],
        prompt: str = "prompt",
        k: int = 3,
        num_candidates: int = 6,
        input_field: str | None = "text",
        demo_format: DemoFormatter | None = None,
        header: str = "Examples:",
        success_threshold: float = 1.0,
        metric: Metric | None = None,
        demos_resource: str | None = None,
        label_field: str | None = None,
        labeled_pool: int | None = None,
        **common: Any,
    ) -> None:
        super().__init__(name=name, **common)
        if k < 1 or num_candidates < 1:
            raise ValidationError("k and num_candidates must be at least 1")
        if demo_format is not None:
            check_callback(demo_format, "demo_format", 2)
        if metric is not None:
            check_callback(metric, "metric", 1)
        self.train = check_dataset(train, "train")
        self.val = check_dataset(val, "val")
        self.prompt = prompt
        self.k = k
        self.num_candidates = num_candidates
        self.input_field = input_field
        self.demo_format = demo_format
        self.header = header
        self.success_threshold = success_threshold
        self.metric = metric
        self.demos_resource = demos_resource
        self.label_field = label_field
        self.labeled_pool = labeled_pool if labeled_pool is not None else 2 * k

    def options(self) -> dict[str, JSON]:
        return {
            **super().options(),
            "train": dataset_digest(self.train),
            "val": dataset_digest(self.val),
            "prompt": self.prompt,
            "k": self.k,
            "num_candidates": self.num_candidates,
            "input_field": self.input_field,
            "demo_format": callable_name(self.demo_format),
            "header": self.header,
            "success_threshold": self.success_threshold,
            "metric": callable_name(self.metric),
            "demos_resource": self.demos_resource,
            "label_field": self.label_field,
            "labeled_pool": self.labeled_pool,
        }

    def run(self, lightning: Lightning) -> AlgorithmResult:
        ctx = RunContext.open(lightning, self)
        if ctx.result is not None:
            return ctx.result
        seed = ctx.resources(SEED)
        template = seed.prompt(self.prompt)
        bootstrap = ctx.evaluate([SEED], self.train, stage="train", metric=self.metric, record=False)[SEED]
        pool = self._demos(lightning, bootstrap, template)
        if not pool:
            logger.warning("run %s: no successful train rollout gave a demonstration", self.name)
        candidates = []
        for i, subset in enumerate(self._subsets(ctx, len(pool))):
            demos = [pool[j] for j in subset]
            edited: dict[str, Resource]
            if self.demos_resource is not None:
                turns = [{"input": d.user, "output": d.output} for d in demos]
                edited = {self.demos_resource: WorkflowConfig({"demos": turns})}
            else:
                edited = {self.prompt: PromptTemplate(self._insert(template, [d.text for d in demos]))}
            made = ctx.add_candidate(
                f"fs{i + 1}",
                {**seed.resources, **edited},
                parent=SEED,
                info={"train_items": [d.item for d in demos], "labeled": [d.labeled for d in demos]},
            )
            candidates.append(made.id)
        evaluations = ctx.evaluate([SEED, *candidates], self.val, stage="val", metric=self.metric)
        best = best_of(ctx.candidates)
        return ctx.finish(best.id, baseline=evaluations[SEED].score)

    def _demos(self, lightning: Lightning, bootstrap: Evaluation, template: PromptTemplate) -> list[_Demo]:
        good = [
            i
            for i, r in zip(bootstrap.items, bootstrap.rewards, strict=True)
            if r is not None and r >= self.success_threshold
        ]
        pool: list[_Demo] = []
        seen: set[str] = set()
        for example in examples(lightning, bootstrap, self.train, only=good):
            call = example.last_call
            if call is None:
                logger.info(
                    "rollout %s has no LLM call in its trajectory; skipped", example.rollout.rollout_id
                )
                continue
            if self.demo_format is not None:
                text = self.demo_format(example.task_input, call)
            else:
                text = f"Input: {input_text(example.task_input, self.input_field)}\nOutput: {call.completion}"
            users = [m.content for m in call.input_messages if m.role == "user"]
            demo = _Demo(example.item, text, users[-1] if users else "", call.completion, labeled=False)
            if text not in seen:
                seen.add(text)
                pool.append(demo)
        if self.label_field is not None and len(pool) < self.labeled_pool:
            used = {d.item for d in pool}
            for item, task in enumerate(self.train):
                if len(pool) >= self.labeled_pool:
                    break
                labeled = self._labeled(item, task, template)
                if item not in used and labeled is not None and labeled.text not in seen:
                    seen.add(labeled.text)
                    pool.append(labeled)
        return pool

    def _labeled(self, item: int, task: JSON, template: PromptTemplate) -> _Demo | None:
        """A demonstration from a train item's own answer, or None when the item has no usable answer."""
        if not isinstance(task, dict) or self.label_field not in task:
            return None
        answer = str(task[self.label_field])
        try:
            user = template.render(**task)
        except ResourceError:
            user = input_text(task, self.input_field)
        text = f"Input: {input_text(task, self.input_field)}\nOutput: {answer}"
        return _Demo(item, text, user, answer, labeled=True)

    def _subsets(self, ctx: RunContext, size: int) -> list[tuple[int, ...]]:
        """Distinct random subsets of the demo pool (as many as exist, at most ``num_candidates``)."""
        k = min(self.k, size)
        if k == 0:
            return []
        wanted = min(self.num_candidates, math.comb(size, k))
        rng = ctx.rng("subsets")
        chosen: list[tuple[int, ...]] = []
        while len(chosen) < wanted:
            subset = tuple(sorted(rng.sample(range(size), k)))
            if subset not in chosen:
                chosen.append(subset)
        return chosen

    def _insert(self, template: PromptTemplate, demos: list[str]) -> str:
        block = "\n\n".join(escape_braces(d) for d in demos)
        text = f"{escape_braces(self.header)}\n\n{block}\n\n{template.template}"
        if PromptTemplate(text).placeholders != template.placeholders:
            raise ResourceError("inserting demonstrations changed the template's placeholders")
        return text
