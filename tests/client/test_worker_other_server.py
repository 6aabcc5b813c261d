"""A worker refuses to run where the process already exports spans to another server."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import child_env, free_port

SCRIPT = textwrap.dedent(
    """
    import sys
    from otel_lightning import Worker, instrument
    from otel_lightning.exceptions import ConfigError

    first, second = sys.argv[1], sys.argv[2]
    instrument(first)
    try:
        Worker(lambda task, resources: 1.0, second).run(max_rollouts=1)
    except ConfigError as exc:
        print("refused:", exc)
    """
)


def test_a_worker_of_another_server_than_the_exporter_is_refused() -> None:
    first, second = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, first, second],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert f"refused: this process already exports spans to {first}" in done.stdout
    assert f"the worker reports to {second}" in done.stdout
