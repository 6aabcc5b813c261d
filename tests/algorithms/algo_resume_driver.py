"""Runs one BootstrapFewShot run against a server, for the resume test: ``python -m ... URL EXPERIMENT RUN``.

Prints the result as JSON on its last line."""

from __future__ import annotations

import json
import logging
import sys

from otel_lightning import connect
from otel_lightning.algorithms import BootstrapFewShot
from tests.algorithms.algo_agent import mixed


def main() -> None:
    url, experiment, run = sys.argv[1:4]
    logging.basicConfig(level=logging.WARNING)
    algo = BootstrapFewShot(name=run, train=mixed(8), val=mixed(8, start=100), k=2, num_candidates=3)
    with connect(url, experiment=experiment) as lightning:
        result = algo.run(lightning)
    print(json.dumps(result.to_json()), flush=True)


if __name__ == "__main__":
    main()
