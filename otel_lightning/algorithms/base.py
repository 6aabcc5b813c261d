"""The plug point for optimization algorithms, and the records they return.

An algorithm takes its options in the constructor and does its work in :meth:`Algorithm.run` through the
:class:`~otel_lightning.client.lightning.Lightning` API only, so the same object runs in-process against
``serve()`` and remotely against ``connect(url)``::

    result = BootstrapFewShot(name="fewshot-1", train=train, val=val).run(lightning)
    lightning.resources(result.best_version)

A run is identified by its ``name`` within the experiment. Its state lives in the server (see
:mod:`otel_lightning.algorithms.run_state`), so running it again with the same name resumes it after a crash
and returns the recorded result once it has finished.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from otel_lightning.algorithms.score import Score
from otel_lightning.exceptions import ValidationError
from otel_lightning.resources import JSON

if TYPE_CHECKING:
    from otel_lightning.client.lightning import Lightning

logger = logging.getLogger(__name__)

_RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")


class ProgressKind(StrEnum):
    """What a progress event reports."""

    STARTED = "started"
    CANDIDATE = "candidate"
    EVALUATED = "evaluated"
    REJECTED = "rejected"
    FINISHED = "finished"


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """One step of a run, for a progress bar or a log."""

    kind: ProgressKind
    run: str
    message: str
    candidate: str | None = None
    score: Score | None = None
    rollouts_used: int = 0
    """Rollouts the run has used so far."""


ProgressCallback = Callable[[ProgressEvent], None]
"""Receives each :class:`ProgressEvent`; runs in the algorithm's thread, so it must be quick."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """One resource set an algorithm tried."""

    id: str
    """Stable id within the run (``seed`` for the version the run started from)."""
    version: int
    """The resource version holding the candidate (the seed version for ``seed``)."""
    score: Score | None = None
    """Its best-informed score on the validation split (the evaluation with the most rollouts)."""
    parent: str | None = None
    """The candidate it was derived from."""
    info: Mapping[str, JSON] = field(default_factory=dict)
    """What the algorithm recorded about it (demos used, sampling parameters, the critique, ...)."""

    def to_json(self) -> dict[str, JSON]:
        return {
            "id": self.id,
            "version": self.version,
            "score": None if self.score is None else self.score.to_json(),
            "parent": self.parent,
            "info": dict(self.info),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Candidate:
        score = data.get("score")
        return cls(
            id=data["id"],
            version=int(data["version"]),
            score=None if score is None else Score.from_json(score),
            parent=data.get("parent"),
            info=dict(data.get("info") or {}),
        )


@dataclass(frozen=True, slots=True)
class AlgorithmResult:
    """What a finished run found."""

    algorithm: str
    run_name: str
    best_version: int
    """The version published at the end with the winner's resources (the experiment's latest then)."""
    best_score: Score
    """The winner's validation score (measured on the candidate version it was published from)."""
    baseline_score: Score | None
    """The seed version's score on the same validation items, when the algorithm measured it."""
    history: tuple[Candidate, ...]
    """Every candidate tried, in creation order."""
    rollouts_used: int
    """Distinct rollouts the run enqueued."""
    best_candidate: str = "seed"
    """The id of the winning candidate."""

    @property
    def improved(self) -> bool:
        """Whether the winner's mean beats the baseline's (no claim of significance)."""
        return self.baseline_score is not None and self.best_score.mean > self.baseline_score.mean

    def to_json(self) -> dict[str, JSON]:
        return {
            "algorithm": self.algorithm,
            "run_name": self.run_name,
            "best_version": self.best_version,
            "best_score": self.best_score.to_json(),
            "baseline_score": None if self.baseline_score is None else self.baseline_score.to_json(),
            "history": [c.to_json() for c in self.history],
            "rollouts_used": self.rollouts_used,
            "best_candidate": self.best_candidate,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AlgorithmResult:
        baseline = data.get("baseline_score")
        return cls(
            algorithm=data["algorithm"],
            run_name=data["run_name"],
            best_version=int(data["best_version"]),
            best_score=Score.from_json(data["best_score"]),
            baseline_score=None if baseline is None else Score.from_json(baseline),
            history=tuple(Candidate.from_json(c) for c in data.get("history") or ()),
            rollouts_used=int(data["rollouts_used"]),
            best_candidate=data.get("best_candidate", "seed"),
        )


class Algorithm(ABC):
    """An optimization algorithm: options in the constructor, the work in :meth:`run`.

    Args:
        name: the run's name, unique within the experiment: running again with the same name resumes it.
            Letters, digits, ``_.-``; at most 64 characters.
        experiment: the experiment to optimise (default: the ``Lightning`` handle's).
        seed_version: the resource version to start from (default: the experiment's latest version that is
            not another run's candidate, when the run starts; a resumed run keeps the one it recorded).
        seed: seeds every random choice, so that a run is reproducible and resumable.
        progress: called with each :class:`ProgressEvent`; events are also logged at INFO.
        max_attempts: attempts per rollout (a timed-out attempt is retried; the agent's own failure is final).
        rollout_timeout_s: wall-clock limit of one attempt (``None``: the lease only).
        wait_timeout_s: how long one evaluation may wait for its rollouts before the run stops with
            TimeoutError (resumable); ``None`` waits forever.
    """

    algorithm_name: ClassVar[str] = "algorithm"
    """The name ``load_algorithm`` finds it by and that results and metadata record."""

    def __init__(
        self,
        *,
        name: str,
        experiment: str | None = None,
        seed_version: int | None = None,
        seed: int = 0,
        progress: ProgressCallback | None = None,
        max_attempts: int = 2,
        rollout_timeout_s: float | None = None,
        wait_timeout_s: float | None = None,
    ) -> None:
        if not isinstance(name, str) or not _RUN_NAME.fullmatch(name):
            raise ValidationError(
                f"run name {name!r} must be 1-64 letters, digits or '_.-', starting with a letter or digit"
            )
        if progress is not None:
            check_callback(progress, "progress", 1)
        if seed_version is not None and seed_version < 1:
            raise ValidationError("seed_version must be a published version (1 or more)")
        if not 1 <= max_attempts <= 100:
            raise ValidationError("max_attempts must be within [1, 100]")
        self.name = name
        self.experiment = experiment
        self.seed_version = seed_version
        self.seed = seed
        self.progress = progress
        self.max_attempts = max_attempts
        self.rollout_timeout_s = rollout_timeout_s
        self.wait_timeout_s = wait_timeout_s

    @abstractmethod
    def run(self, lightning: Lightning) -> AlgorithmResult:
        """Run (or resume) the search and publish the winner as a new resource version."""

    def options(self) -> dict[str, JSON]:
        """The options that decide what the run does, as JSON; a resumed run must have the same ones.

        Subclasses add theirs (datasets included) to the base's.
        """
        return {"seed": self.seed, "max_attempts": self.max_attempts}


def check_callback(fn: Any, what: str, arity: int) -> None:
    """Raise a clear TypeError unless ``fn`` is callable with ``arity`` positional arguments."""
    if not callable(fn):
        raise TypeError(f"{what} must be callable, not {type(fn).__name__}")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # a builtin without a signature: accept it, a wrong one fails at the first call
    try:
        signature.bind(*([None] * arity))
    except TypeError as exc:
        raise TypeError(
            f"{what} must accept {arity} positional argument(s): {fn!r} does not ({exc})"
        ) from None


def check_dataset(data: Sequence[JSON], what: str, *, allow_empty: bool = False) -> tuple[JSON, ...]:
    """A dataset (a sequence of JSON task inputs) as a tuple; raises ValidationError if it is not one."""
    if isinstance(data, (str, bytes, Mapping)) or not isinstance(data, Sequence):
        raise ValidationError(f"{what} must be a sequence of task inputs")
    if not data and not allow_empty:
        raise ValidationError(f"{what} must not be empty")
    return tuple(data)


def dataset_digest(data: Sequence[JSON]) -> str:
    """A digest of a dataset, for a run's options (so a resume with other data is refused)."""
    return hashlib.sha256(json.dumps(list(data), sort_keys=True, default=repr).encode()).hexdigest()


def callable_name(fn: Any) -> str | None:
    """A stable name for a user callback, recorded in a run's options."""
    if fn is None:
        return None
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"
