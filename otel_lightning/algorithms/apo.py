"""APO: prompt optimization by textual gradients, with beam search and bandit selection.

Each round:

1. **Select** which beam members to expand with UCB: a member's arm holds every reward it has earned
   (validation and train minibatches); ``mean + c * sqrt(2 ln N / n)`` favours good members that have been
   measured little.
2. **Critique**: run the selected parents on one shared train minibatch, read the failures' trajectories (the
   prompt really sent and the model's output), and ask the optimizer LLM why the template failed.
3. **Edit**: ask the optimizer LLM for ``branch_factor`` improved templates per critique. An edit that drops
   or adds a placeholder (or does not parse) is rejected and logged; duplicates are skipped.
4. **Evaluate** all new candidates at once, on the same validation items as every other candidate (paired
   comparisons), and keep the ``beam_width`` best in the beam.

The optimizer LLM is any OpenAI-compatible endpoint (an :class:`~otel_lightning.resources.LLMEndpoint`);
its answers are recorded in the run's state, so a resumed run replays them instead of asking again.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from otel_lightning.algorithms import apo_prompts
from otel_lightning.algorithms.base import (
    Algorithm,
    AlgorithmResult,
    ProgressKind,
    callable_name,
    check_callback,
    check_dataset,
    dataset_digest,
)
from otel_lightning.algorithms.evaluate import Evaluation, Metric
from otel_lightning.algorithms.feedback import examples
from otel_lightning.algorithms.run_state import SEED, RunContext, best_of
from otel_lightning.exceptions import ValidationError
from otel_lightning.resources import JSON, LLMEndpoint, PromptTemplate

if TYPE_CHECKING:
    from otel_lightning.client.lightning import Lightning

logger = logging.getLogger(__name__)


class APO(Algorithm):
    """Automatic prompt optimization with an optimizer LLM (critique -> edit -> beam search).

    Args:
        name: the run's name (see :class:`~otel_lightning.algorithms.base.Algorithm` for the common options).
        train: task inputs whose failures are critiqued.
        val: task inputs every candidate is scored on.
        optimizer: the optimizer LLM's endpoint.
        prompt: name of the prompt-template resource to edit.
        rounds: rounds of select -> critique -> edit -> evaluate.
        beam_width: candidates kept between rounds.
        expand: beam members expanded per round (chosen by UCB).
        branch_factor: edits asked for per critique.
        minibatch: train items run per round to find failures.
        max_examples: failures shown in one critique.
        val_size: validation items every candidate runs on (a seeded subset; all by default).
        ucb_c: UCB exploration weight (rewards are assumed within [0, 1]).
        failure_below: a reward under this is a failure to critique.
        optimizer_temperature, optimizer_max_tokens: sampling of the optimizer LLM.
        critique_prompt, edit_prompt: the optimizer's prompts (:mod:`~otel_lightning.algorithms.apo_prompts`).
        input_field: the task input's field shown in critiques.
        metric: ``metric(rollout) -> reward | None`` (default: the rollout's reward; failures score 0).
    """

    algorithm_name = "apo"

    def __init__(
        self,
        *,
        name: str,
        train: Sequence[JSON],
        val: Sequence[JSON],
        optimizer: LLMEndpoint,
        prompt: str = "prompt",
        rounds: int = 3,
        beam_width: int = 2,
        expand: int = 2,
        branch_factor: int = 2,
        minibatch: int = 8,
        max_examples: int = 4,
        val_size: int | None = None,
        ucb_c: float = 1.0,
        failure_below: float = 1.0,
        optimizer_temperature: float | None = 1.0,
        optimizer_max_tokens: int | None = None,
        critique_prompt: str = apo_prompts.CRITIQUE_PROMPT,
        edit_prompt: str = apo_prompts.EDIT_PROMPT,
        input_field: str | None = "text",
        metric: Metric | None = None,
        **common: Any,
    ) -> None:
        super().__init__(name=name, **common)
        if not isinstance(optimizer, LLMEndpoint):
            raise TypeError("optimizer must be an LLMEndpoint")
        if min(rounds, beam_width, expand, branch_factor, minibatch, max_examples) < 1:
            raise ValidationError(
                "rounds, beam_width, expand, branch_factor, minibatch, max_examples must be >= 1"
            )
        if metric is not None:
            check_callback(metric, "metric", 1)
        self.train = check_dataset(train, "train")
        self.val = check_dataset(val, "val")
        self.optimizer = optimizer
        self.prompt = prompt
        self.rounds = rounds
        self.beam_width = beam_width
        self.expand = expand
        self.branch_factor = branch_factor
        self.minibatch = minibatch
        self.max_examples = max_examples
        self.val_size = val_size
        self.ucb_c = ucb_c
        self.failure_below = failure_below
        self.critique_prompt = critique_prompt
        self.edit_prompt = edit_prompt
        self.input_field = input_field
        self.metric = metric
        self._llm = apo_prompts.OptimizerLLM(optimizer, optimizer_temperature, optimizer_max_tokens)

    def options(self) -> dict[str, JSON]:
        return {
            **super().options(),
            "train": dataset_digest(self.train),
            "val": dataset_digest(self.val),
            "optimizer_model": self.optimizer.model,
            "prompt": self.prompt,
            "rounds": self.rounds,
            "beam_width": self.beam_width,
            "expand": self.expand,
            "branch_factor": self.branch_factor,
            "minibatch": self.minibatch,
            "max_examples": self.max_examples,
            "val_size": self.val_size,
            "ucb_c": self.ucb_c,
            "failure_below": self.failure_below,
            "critique_prompt": self.critique_prompt,
            "edit_prompt": self.edit_prompt,
            "metric": callable_name(self.metric),
        }

    def run(self, lightning: Lightning) -> AlgorithmResult:
        ctx = RunContext.open(lightning, self)
        if ctx.result is not None:
            return ctx.result
        seed = ctx.resources(SEED)
        seed.prompt(self.prompt)  # fail early when the seed has no such prompt
        val_items = self._val_items(ctx)
        arms: dict[str, list[float]] = defaultdict(list)
        baseline = self._evaluate(ctx, [SEED], val_items, arms)[SEED].score
        beam = [SEED]
        known = {seed.prompt(self.prompt).template: SEED}
        for round_ in range(1, self.rounds + 1):
            parents = self._select(beam, arms)
            batch = ctx.rng("minibatch", round_).sample(
                range(len(self.train)), min(self.minibatch, len(self.train))
            )
            runs = ctx.evaluate(
                parents, self.train, stage="train", items=batch, metric=self.metric, record=False
            )
            new: list[str] = []
            for parent in parents:
                arms[parent] += [0.0 if r is None else r for r in runs[parent].rewards]
                for text, critique in self._edits(ctx, round_, parent, runs[parent]):
                    if text in known:
                        continue
                    cid = f"r{round_}.{len(new) + 1}"
                    known[text] = cid
                    ctx.add_candidate(
                        cid,
                        {**seed.resources, self.prompt: PromptTemplate(text)},
                        parent=parent,
                        info={"critique": critique[:2000]},
                    )
                    new.append(cid)
            if not new:
                logger.info("run %s round %d: no new candidate", self.name, round_)
                continue
            self._evaluate(ctx, new, val_items, arms)
            ranked = sorted(beam + new, key=lambda c: -_mean(ctx, c))  # stable: earlier wins ties
            beam = ranked[: self.beam_width]
        best = best_of(ctx.candidates)
        return ctx.finish(best.id, baseline=baseline)

    def _val_items(self, ctx: RunContext) -> list[int]:
        items = list(range(len(self.val)))
        if self.val_size is None or self.val_size >= len(items):
            return items
        return sorted(ctx.rng("val").sample(items, self.val_size))

    def _evaluate(
        self, ctx: RunContext, cids: list[str], items: list[int], arms: dict[str, list[float]]
    ) -> dict[str, Evaluation]:
        found = ctx.evaluate(cids, self.val, stage="val", items=items, metric=self.metric)
        for cid, evaluation in found.items():
            arms[cid] += [0.0 if r is None else r for r in evaluation.rewards]
        return found

    def _select(self, beam: list[str], arms: dict[str, list[float]]) -> list[str]:
        """The beam members with the highest upper confidence bounds."""
        total = sum(len(arms[c]) for c in beam)

        def ucb(cid: str) -> float:
            pulls = arms[cid]
            if not pulls:
                return math.inf
            return sum(pulls) / len(pulls) + self.ucb_c * math.sqrt(2 * math.log(max(total, 1)) / len(pulls))

        return sorted(beam, key=lambda c: -ucb(c))[: self.expand]

    def _edits(self, ctx: RunContext, round_: int, parent: str, run: Evaluation) -> list[tuple[str, str]]:
        """Accepted edits of ``parent`` (template text, critique) from its failures on the minibatch."""
        failing = [
            i for i, r in zip(run.items, run.rewards, strict=True) if r is None or r < self.failure_below
        ]
        if not failing:
            logger.info("run %s: %s made no mistake on the minibatch; nothing to critique", self.name, parent)
            return []
        shown = ctx.rng("examples", round_, parent).sample(failing, min(self.max_examples, len(failing)))
        template = ctx.resources(parent).prompt(self.prompt)

        def critique() -> str:
            found = examples(ctx.lightning, run, self.train, only=shown)
            text = apo_prompts.format_examples(found, self.input_field)
            return self._llm.ask(apo_prompts.critique_request(self.critique_prompt, template, text))

        gradient = str(ctx.memo(f"critique:{round_}:{parent}", critique))
        accepted = []
        for j in range(self.branch_factor):
            request = apo_prompts.edit_request(self.edit_prompt, template, gradient)
            reply = str(ctx.memo(f"edit:{round_}:{parent}:{j}", partial(self._llm.ask, request, j)))
            text = apo_prompts.extract_prompt(reply)
            problem = apo_prompts.check_placeholders(text, template)
            if problem is not None:
                logger.warning(
                    "run %s: rejected an edit of %s (%s): %r", self.name, parent, problem, text[:200]
                )
                ctx.emit(ProgressKind.REJECTED, f"rejected an edit of {parent}: {problem}", candidate=parent)
                continue
            accepted.append((text, gradient))
        return accepted


def _mean(ctx: RunContext, cid: str) -> float:
    score = ctx.get(cid).score
    return -math.inf if score is None else score.mean
