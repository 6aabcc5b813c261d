"""The ``Lightning`` API that drivers and algorithms use, the same in-process and remote.

``serve()`` starts a server in this process (a background thread on a free port, SQLite store) and returns a
``Lightning`` connected to it; ``connect(url)`` returns one for a long-running server. Both talk to the server
over its REST API, so code written against one runs unchanged against the other::

    with serve() as lightning:
        lightning.publish({"prompt": PromptTemplate("Classify: {text}")})
        rollouts = lightning.wait(lightning.enqueue([{"text": "..."}]))
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from os import PathLike
from typing import Any

from otel_lightning.client import calls
from otel_lightning.client.http import ApiClient
from otel_lightning.config import ClientSettings, ServerSettings
from otel_lightning.exceptions import ValidationError
from otel_lightning.resources import JSON, Resource, ResourceVersion
from otel_lightning.spans.records import SpanRecord
from otel_lightning.spans.trajectory import RewardMatching, Trajectory
from otel_lightning.spans.tree import SpanTree
from otel_lightning.types import DEFAULT_EXPERIMENT, Attempt, Rollout, RolloutFilter, RolloutStatus, Task


class Lightning:
    """A handle on one server and one experiment (``experiment=`` on each method picks another)."""

    def __init__(
        self, client: ApiClient, *, experiment: str = DEFAULT_EXPERIMENT, server: Any = None
    ) -> None:
        self._client = client
        self.experiment = experiment
        self._server = server

    @property
    def url(self) -> str:
        """The server's base URL (give it to workers and to ``instrument()``)."""
        return self._client.settings.server_url

    # --- resources ---------------------------------------------------------------------------------------

    def publish(
        self,
        resources: Mapping[str, Resource],
        *,
        expected_version: int | None = None,
        metadata: Mapping[str, JSON] | None = None,
        experiment: str | None = None,
    ) -> ResourceVersion:
        """Publish a new immutable resource version.

        Raises ConflictError if ``expected_version`` is given and is not the latest version.
        """
        return self._client.call(
            calls.publish(experiment or self.experiment, resources, expected_version, metadata)
        )

    def resources(self, version: int | None = None, *, experiment: str | None = None) -> ResourceVersion:
        """A resource version (the latest by default; version 0 is the empty set)."""
        return self._client.call(calls.get_resources(experiment or self.experiment, version))

    def resource_versions(self, *, experiment: str | None = None) -> list[ResourceVersion]:
        """Every version of the experiment, oldest first."""
        return self._client.call(calls.list_versions(experiment or self.experiment))

    # --- rollouts ----------------------------------------------------------------------------------------

    def enqueue(
        self,
        inputs: Iterable[JSON | Task],
        *,
        resource_version: int | None = None,
        max_attempts: int = 3,
        timeout_s: float | None = None,
        experiment: str | None = None,
        batch_size: int = 1000,
    ) -> list[Rollout]:
        """Queue one rollout per input (a Task is taken as it is, with this experiment if it names none).

        Every task gets a rollout id before it is sent, so a retried request never enqueues twice.
        """
        tasks = []
        for item in inputs:
            if isinstance(item, Task):
                task = item
            else:
                task = Task(
                    input=item,
                    experiment=experiment or self.experiment,
                    resource_version=resource_version,
                    max_attempts=max_attempts,
                    timeout_s=timeout_s,
                )
            if task.rollout_id is None:
                task = Task(**{**_task_fields(task), "rollout_id": uuid.uuid4().hex})
            tasks.append(task)
        rollouts: list[Rollout] = []
        for start in range(0, len(tasks), batch_size):
            batch: list[Rollout] = self._client.call(calls.enqueue(tasks[start : start + batch_size]))
            rollouts.extend(batch)
        return rollouts

    def wait(
        self,
        rollouts: Iterable[str | Rollout],
        timeout_s: float | None = None,
        *,
        poll_s: float = 30.0,
        complete: bool = False,
    ) -> list[Rollout]:
        """Block until every rollout has ended (or ``timeout_s`` passes); their current records, in order.

        With ``complete=True`` a rollout also waits for its trace: until the server holds every span its
        latest attempt reported, or the server's grace period (``completeness_grace_s``) after it ended has
        passed. Raises TimeoutError, naming how many are unfinished, if the timeout passes first.
        """
        ids = [r.rollout_id if isinstance(r, Rollout) else r for r in rollouts]
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        pending = list(dict.fromkeys(ids))
        final: dict[str, Rollout] = {}
        while pending:
            remaining = poll_s if deadline is None else min(poll_s, deadline - time.monotonic())
            if remaining <= 0:
                raise TimeoutError(f"{len(pending)} of {len(set(ids))} rollouts have not ended")
            for start in range(0, len(pending), 5000):
                chunk = pending[start : start + 5000]
                _, current, waiting = self._client.call(calls.wait(chunk, remaining, complete))
                final.update({r.rollout_id: r for r in current if r.rollout_id not in waiting})
            pending = [i for i in pending if i not in final]
        return [final[i] for i in ids]

    def run(
        self, inputs: Iterable[JSON | Task], timeout_s: float | None = None, **options: Any
    ) -> list[Rollout]:
        """Enqueue and wait: the rollouts' final records, in the inputs' order."""
        return self.wait(self.enqueue(inputs, **options), timeout_s)

    def rollouts(
        self,
        *,
        status: RolloutStatus | Sequence[RolloutStatus] = (),
        resource_version: int | None = None,
        experiment: str | None = None,
        limit: int = 1000,
        offset: int = 0,
    ) -> list[Rollout]:
        """Rollouts of the experiment, oldest first, filtered by status and resource version."""
        statuses = (status,) if isinstance(status, RolloutStatus) else tuple(status)
        where = RolloutFilter(
            experiment=experiment or self.experiment,
            statuses=statuses,
            resource_version=resource_version,
            limit=limit,
            offset=offset,
        )
        return self._client.call(calls.list_rollouts(where))

    def rollout(self, rollout_id: str) -> Rollout:
        return self._client.call(calls.get_rollout(rollout_id))

    def attempts(self, rollout_id: str) -> list[Attempt]:
        return self._client.call(calls.list_attempts(rollout_id))

    def cancel(self, rollout_id: str) -> Rollout:
        return self._client.call(calls.cancel(rollout_id))

    # --- telemetry ---------------------------------------------------------------------------------------

    def spans(self, rollout_id: str, attempt_id: str | None = None) -> list[SpanRecord]:
        """Spans of one attempt (the latest by default; ``"all"`` for every attempt)."""
        spans, _ = self._client.call(calls.telemetry(rollout_id, attempt_id))
        return spans

    def span_tree(self, rollout_id: str, attempt_id: str | None = None) -> SpanTree:
        """The span tree of one attempt (the latest by default), with its GenAI log records joined."""
        spans, logs = self._client.call(calls.telemetry(rollout_id, attempt_id))
        return SpanTree.from_spans(spans, logs)

    def trajectory(
        self,
        rollout_id: str,
        attempt_id: str | None = None,
        *,
        matching: RewardMatching = RewardMatching.FINAL_TO_ALL,
    ) -> Trajectory:
        """The trajectory (LLM calls as steps, rewards) of one attempt, the latest by default."""
        return self._client.call(calls.trajectory(rollout_id, attempt_id, matching))

    # --- lifecycle ---------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection, and stop the server if ``serve()`` started it."""
        self._client.close()
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> Lightning:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _task_fields(task: Task) -> dict[str, Any]:
    return {name: getattr(task, name) for name in Task.__dataclass_fields__}


def connect(
    url: str | None = None, *, experiment: str = DEFAULT_EXPERIMENT, api_token: str | None = None
) -> Lightning:
    """A ``Lightning`` for a running server (argument -> ``OTEL_LIGHTNING_SERVER`` -> default URL)."""
    return Lightning(ApiClient(ClientSettings.resolve(url, api_token=api_token)), experiment=experiment)


def serve(
    db: str | PathLike[str] = ":memory:",
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    experiment: str = DEFAULT_EXPERIMENT,
    **settings: Any,
) -> Lightning:
    """Start a server in this process (background thread; a free port unless ``port`` is given).

    Args:
        db: SQLite file, ``":memory:"`` for a store that lives as long as the server, or a
            ``postgresql://`` URL.
        host: interface to listen on.
        port: port to listen on; 0 picks a free one.
        experiment: the default experiment of the returned handle.
        **settings: any other ServerSettings field (``lease_s``, ``api_token``, ...).
    """
    from otel_lightning.collector.app import create_app
    from otel_lightning.collector.background import BackgroundServer
    from otel_lightning.store.open import open_store

    if "db" in settings:
        raise ValidationError("pass db as the first argument")
    server_settings = ServerSettings.resolve(env={}, db=str(db), host=host, port=port, **settings)
    store = open_store(server_settings.db)
    server = BackgroundServer(create_app(store, server_settings, close_store=True), host, port).start()
    client = ApiClient(ClientSettings.resolve(server.url, api_token=server_settings.api_token))
    return Lightning(client, experiment=experiment, server=server)
