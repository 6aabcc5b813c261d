"""Export a server's trajectories as training data (``otel-lightning export`` and the same from Python)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from otel_lightning.client.lightning import Lightning
from otel_lightning.spans.export import ExportFormat, write
from otel_lightning.spans.trajectory import RewardMatching, Trajectory
from otel_lightning.types import RolloutStatus

logger = logging.getLogger(__name__)


def export_rollouts(
    lightning: Lightning,
    path: str | Path,
    fmt: ExportFormat | str,
    *,
    experiment: str | None = None,
    resource_version: int | None = None,
    statuses: tuple[RolloutStatus, ...] = (RolloutStatus.SUCCEEDED,),
    min_reward: float | None = None,
    matching: RewardMatching = RewardMatching.FINAL_TO_ALL,
    page_size: int = 500,
) -> int:
    """Write the trajectories of the matching rollouts to ``path``; returns the number of records.

    Args:
        lightning: the server to read from.
        path: the output file.
        fmt: ``sft``, ``triplets`` or ``parquet``.
        experiment: the experiment (the handle's own by default).
        resource_version: only rollouts that ran with this version.
        statuses: only rollouts in these statuses (succeeded by default).
        min_reward: only rollouts whose final reward is at least this.
        matching: how rewards are matched to steps.
        page_size: rollouts listed per request.
    """
    fmt = ExportFormat(fmt)

    def trajectories() -> Iterator[Trajectory]:
        offset = 0
        while True:
            page = lightning.rollouts(
                status=statuses,
                resource_version=resource_version,
                experiment=experiment,
                limit=page_size,
                offset=offset,
            )
            for rollout in page:
                if min_reward is not None and (rollout.reward is None or rollout.reward < min_reward):
                    continue
                yield lightning.trajectory(rollout.rollout_id, matching=matching)
            if len(page) < page_size:
                return
            offset += page_size

    count = write(trajectories(), path, fmt)
    logger.info("exported %d %s records to %s", count, fmt.value, path)
    return count
