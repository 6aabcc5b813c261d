"""A run's state, kept in the server so that a run resumes after a crash and two runs never mix.

The state lives in its own experiment, ``{experiment}.runs.{run}``, as the ``state`` resource (a
:class:`~otel_lightning.resources.WorkflowConfig`) of successive resource versions: every checkpoint is a
new version published with ``expected_version`` = the version this process last read or wrote
(compare-and-swap), so a second process running the same name fails with ConflictError at its next
checkpoint instead of silently overwriting the first's state.

What is recorded:

- the algorithm, a digest of its options (datasets included) and the seed version: resuming with other
  options fails rather than mixing two searches;
- every candidate: its id, the resource version holding it, its score, its parent and notes;
- ``memo``: results that cannot be recomputed identically (an optimizer LLM's answers);
- when finished, the result.

Candidates are published to the task experiment with metadata ``{"run", "candidate"}``; the winner is
published again at the end with ``{"algorithm", "run", "score", "best_candidate", ...}``. A resumed run looks
those up before publishing, so it never publishes a candidate twice, even one published just before a
crash that the state had not recorded yet. Everything else is recomputed on resume: random choices come from
RNGs seeded by the run's seed and the step, and evaluations re-enqueue the same rollout ids, which the
server answers with the rollouts that exist.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from otel_lightning.algorithms.base import (
    Algorithm,
    AlgorithmResult,
    Candidate,
    ProgressEvent,
    ProgressKind,
)
from otel_lightning.algorithms.evaluate import Evaluation, Metric, evaluate_many
from otel_lightning.algorithms.score import Score
from otel_lightning.exceptions import ConflictError, ValidationError
from otel_lightning.resources import JSON, Resource, ResourceVersion, WorkflowConfig

if TYPE_CHECKING:
    from otel_lightning.client.lightning import Lightning

logger = logging.getLogger(__name__)

STATE_RESOURCE = "state"
"""Name of the resource holding a run's state in its state experiment."""
SEED = "seed"
"""Candidate id of the version a run starts from."""
_FORMAT = 1


def state_experiment(experiment: str, run: str) -> str:
    """The experiment holding a run's checkpoints."""
    name = f"{experiment}.runs.{run}"
    if len(name) > 200:
        name = f"{hashlib.sha256(experiment.encode()).hexdigest()[:16]}.runs.{run}"
    return name


def options_digest(options: Mapping[str, JSON]) -> str:
    """A digest of an algorithm's options (datasets included), compared when a run resumes."""
    text = json.dumps(options, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


class RunContext:
    """One run's server-side state and the operations algorithms build on.

    Use :meth:`open`; if :attr:`result` is set the run has finished and there is nothing to do.
    """

    def __init__(self, lightning: Lightning, algorithm: Algorithm, experiment: str) -> None:
        self.lightning = lightning
        self.algorithm = algorithm
        self.experiment = experiment
        self.run = algorithm.name
        self.state_experiment = state_experiment(experiment, algorithm.name)
        self.resumed = False
        self.result: AlgorithmResult | None = None
        self.seed_version = 0
        self._digest = options_digest(algorithm.options())  # once: the options may hold whole datasets
        self._state_version = 0
        self._candidates: dict[str, Candidate] = {}
        self._memo: dict[str, JSON] = {}
        self._published: dict[str, int] = {}
        self._final_version: int | None = None
        self._seen: set[str] = set()
        self._versions: dict[int, ResourceVersion] = {}

    @classmethod
    def open(cls, lightning: Lightning, algorithm: Algorithm) -> RunContext:
        """Load the run's state from the server, or start a new run (raises ConflictError on a mismatch)."""
        ctx = cls(lightning, algorithm, algorithm.experiment or lightning.experiment)
        current = lightning.resources(experiment=ctx.state_experiment)
        if current.version == 0:
            ctx._start()
        else:
            ctx._load(current)
        return ctx

    # --- opening -----------------------------------------------------------------------------------------

    def _start(self) -> None:
        seed = self.algorithm.seed_version
        if seed is None:
            # While another run is going, the latest version may be one of its candidates: skip those.
            chosen = [
                v.version
                for v in self.lightning.resource_versions(experiment=self.experiment)
                if "candidate" not in v.metadata
            ]
            if not chosen:
                raise ValidationError(
                    f"experiment {self.experiment!r} has no resource version to start from: publish one first"
                )
            seed = chosen[-1]
        self.seed_version = seed
        self._candidates[SEED] = Candidate(SEED, seed)
        self._checkpoint("started")
        self.emit(ProgressKind.STARTED, f"started from version {seed}")

    def _load(self, current: ResourceVersion) -> None:
        resource = current.resources.get(STATE_RESOURCE)
        if not isinstance(resource, WorkflowConfig):
            raise ValidationError(f"experiment {self.state_experiment!r} holds no run state")
        state = resource.value
        if state.get("algorithm") != self.algorithm.algorithm_name:
            raise ConflictError(
                f"run {self.run!r} of {self.experiment!r} is a {state.get('algorithm')} run, "
                f"not {self.algorithm.algorithm_name}: choose another name"
            )
        if state.get("options") != self._digest:
            raise ConflictError(
                f"run {self.run!r} of {self.experiment!r} was started with other options or data: "
                "choose another name to start a new run"
            )
        wanted = self.algorithm.seed_version
        if wanted is not None and wanted != state["seed_version"]:
            raise ConflictError(
                f"run {self.run!r} started from version {state['seed_version']}, not {wanted}"
            )
        self.resumed = True
        self._state_version = current.version
        self.seed_version = int(state["seed_version"])
        self._candidates = {c["id"]: Candidate.from_json(c) for c in state.get("candidates") or ()}
        self._memo = dict(state.get("memo") or {})
        if state.get("result") is not None:
            self.result = AlgorithmResult.from_json(state["result"])
            return
        # Versions this run published that the state may not record yet (a crash right after publishing).
        for version in self.lightning.resource_versions(experiment=self.experiment):
            meta = version.metadata
            if meta.get("run") != self.run:
                continue
            if "best_candidate" in meta:
                self._final_version = version.version
            elif isinstance(meta.get("candidate"), str):
                self._published.setdefault(meta["candidate"], version.version)
        logger.info("resuming run %s of %s from checkpoint %d", self.run, self.experiment, current.version)

    # --- state -------------------------------------------------------------------------------------------

    def _state(self, status: str) -> dict[str, JSON]:
        return {
            "format": _FORMAT,
            "algorithm": self.algorithm.algorithm_name,
            "run": self.run,
            "options": self._digest,
            "seed_version": self.seed_version,
            "status": status,
            "candidates": [c.to_json() for c in self._candidates.values()],
            "memo": dict(self._memo),
            "result": None if self.result is None else self.result.to_json(),
        }

    def _checkpoint(self, step: str) -> None:
        status = "finished" if self.result is not None else "running"
        try:
            published = self.lightning.publish(
                {STATE_RESOURCE: WorkflowConfig(self._state(status))},
                expected_version=self._state_version,
                metadata={"run": self.run, "algorithm": self.algorithm.algorithm_name, "step": step},
                experiment=self.state_experiment,
            )
        except ConflictError:
            raise ConflictError(
                f"run {self.run!r} of {self.experiment!r} was changed by another process "
                f"(expected checkpoint {self._state_version}): is the same run running twice?"
            ) from None
        self._state_version = published.version

    def emit(
        self, kind: ProgressKind, message: str, *, candidate: str | None = None, score: Score | None = None
    ) -> None:
        """Log a progress event and hand it to the algorithm's progress callback."""
        logger.info("run %s: %s", self.run, message)
        callback = self.algorithm.progress
        if callback is not None:
            callback(ProgressEvent(kind, self.run, message, candidate, score, len(self._seen)))

    def rng(self, *key: object) -> random.Random:
        """A random generator determined by the run's seed and ``key`` (the same after a resume)."""
        return random.Random(":".join([str(self.algorithm.seed), *map(str, key)]))

    def memo(self, key: str, compute: Callable[[], JSON]) -> JSON:
        """``compute()``'s value, recorded in the state: a resumed run gets the recorded value back."""
        if key not in self._memo:
            self._memo[key] = as_json(compute())
            self._checkpoint(f"memo {key}")
        return self._memo[key]

    # --- candidates --------------------------------------------------------------------------------------

    @property
    def candidates(self) -> list[Candidate]:
        """Every candidate so far, in creation order."""
        return list(self._candidates.values())

    def get(self, candidate: str) -> Candidate:
        return self._candidates[candidate]

    def __contains__(self, candidate: object) -> bool:
        return candidate in self._candidates

    def resources(self, candidate: str) -> ResourceVersion:
        """The resource version holding a candidate (fetched once)."""
        version = self._candidates[candidate].version
        if version not in self._versions:
            self._versions[version] = self.lightning.resources(version, experiment=self.experiment)
        return self._versions[version]

    def add_candidate(
        self,
        candidate: str,
        resources: Mapping[str, Resource],
        *,
        parent: str | None = None,
        info: Mapping[str, JSON] | None = None,
    ) -> Candidate:
        """Publish a candidate's resources, unless this run has published it already (then it is returned)."""
        if candidate in self._candidates:
            return self._candidates[candidate]
        if ":" in candidate or not candidate:
            raise ValidationError(f"candidate id {candidate!r} must be non-empty and hold no ':'")
        version = self._published.get(candidate)
        if version is None:
            published = self.lightning.publish(
                resources, metadata={"run": self.run, "candidate": candidate}, experiment=self.experiment
            )
            version = published.version
            self._versions[version] = published
        made = Candidate(candidate, version, None, parent, dict(info or {}))
        self._candidates[candidate] = made
        self._checkpoint(f"candidate {candidate}")
        self.emit(ProgressKind.CANDIDATE, f"candidate {candidate} is version {version}", candidate=candidate)
        return made

    def evaluate(
        self,
        candidates: Sequence[str],
        dataset: Sequence[JSON],
        *,
        stage: str,
        items: Sequence[int] | None = None,
        metric: Metric | None = None,
        record: bool = True,
    ) -> dict[str, Evaluation]:
        """Evaluate candidates on the same items in parallel; ``record`` keeps their best-informed score."""
        if not candidates:
            return {}
        algo = self.algorithm
        evaluations = evaluate_many(
            self.lightning,
            {c: self._candidates[c].version for c in candidates},
            dataset,
            run=self.run,
            stage=stage,
            items=items,
            experiment=self.experiment,
            max_attempts=algo.max_attempts,
            rollout_timeout_s=algo.rollout_timeout_s,
            wait_timeout_s=algo.wait_timeout_s,
            metric=metric,
        )
        changed = False
        for candidate, evaluation in evaluations.items():
            self._seen.update(r.rollout_id for r in evaluation.rollouts)
            if record:
                known = self._candidates[candidate].score
                if known is None or evaluation.score.n >= known.n:
                    changed = changed or known != evaluation.score
                    self._candidates[candidate] = replace(self._candidates[candidate], score=evaluation.score)
            self.emit(
                ProgressKind.EVALUATED,
                f"{candidate} on {len(evaluation.items)} {stage} items: {evaluation.score}",
                candidate=candidate,
                score=evaluation.score,
            )
        if changed:
            self._checkpoint(f"evaluated {stage}")
        return evaluations

    @property
    def rollouts_used(self) -> int:
        """Distinct rollouts this run has evaluated (a resumed run counts the earlier ones again)."""
        return len(self._seen)

    # --- the end -----------------------------------------------------------------------------------------

    def finish(self, best: str, baseline: Score | None) -> AlgorithmResult:
        """Publish the winner as a new version, record the result, and return it."""
        winner = self._candidates[best]
        if winner.score is None:
            raise ValidationError(f"candidate {best} was never evaluated")
        version = self._final_version
        if version is None:
            source = self.resources(best)
            published = self.lightning.publish(
                source.resources,
                metadata={
                    "algorithm": self.algorithm.algorithm_name,
                    "run": self.run,
                    "score": winner.score.mean,
                    "score_json": winner.score.to_json(),
                    "baseline": None if baseline is None else baseline.mean,
                    "best_candidate": best,
                    "source_version": winner.version,
                },
                experiment=self.experiment,
            )
            version = published.version
        self.result = AlgorithmResult(
            algorithm=self.algorithm.algorithm_name,
            run_name=self.run,
            best_version=version,
            best_score=winner.score,
            baseline_score=baseline,
            history=tuple(self._candidates.values()),
            rollouts_used=self.rollouts_used,
            best_candidate=best,
        )
        self._checkpoint("finished")
        self.emit(
            ProgressKind.FINISHED,
            f"best is {best}, published as version {version}: {winner.score}",
            candidate=best,
            score=winner.score,
        )
        return self.result


def best_of(candidates: Sequence[Candidate]) -> Candidate:
    """The candidate with the highest mean score; ties go to the earliest (the seed before its edits)."""
    scored = [c for c in candidates if c.score is not None]
    if not scored:
        raise ValidationError("no candidate has a score")
    return max(scored, key=lambda c: (c.score.mean if c.score else 0.0, -scored.index(c)))


def as_json(value: Any) -> JSON:
    """``value`` round-tripped through JSON (what a memo holds after a resume)."""
    return json.loads(json.dumps(value))
