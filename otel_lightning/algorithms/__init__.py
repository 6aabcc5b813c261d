"""Optimization algorithms that improve an agent through the ``Lightning`` API.

Each runs in-process against ``serve()`` or remotely against ``connect(url)``, keeps its state in the
server (resumable by name), and publishes the winner as a new resource version. See docs/algorithms.md.
"""

from otel_lightning.algorithms.apo import APO
from otel_lightning.algorithms.base import (
    Algorithm,
    AlgorithmResult,
    Candidate,
    ProgressCallback,
    ProgressEvent,
    ProgressKind,
)
from otel_lightning.algorithms.evaluate import Evaluation, Metric, evaluate, evaluate_many, rollout_id
from otel_lightning.algorithms.evolution import EvolutionarySearch, MutationOperator
from otel_lightning.algorithms.fewshot import BootstrapFewShot, DemoFormatter
from otel_lightning.algorithms.registry import ENTRY_POINT_GROUP, available_algorithms, load_algorithm
from otel_lightning.algorithms.run_state import RunContext, state_experiment
from otel_lightning.algorithms.sampling import SamplingSearch, SearchStrategy
from otel_lightning.algorithms.score import Score

__all__ = [
    "APO",
    "ENTRY_POINT_GROUP",
    "Algorithm",
    "AlgorithmResult",
    "BootstrapFewShot",
    "Candidate",
    "DemoFormatter",
    "Evaluation",
    "EvolutionarySearch",
    "Metric",
    "MutationOperator",
    "ProgressCallback",
    "ProgressEvent",
    "ProgressKind",
    "RunContext",
    "SamplingSearch",
    "Score",
    "SearchStrategy",
    "available_algorithms",
    "evaluate",
    "evaluate_many",
    "load_algorithm",
    "rollout_id",
    "state_experiment",
]
