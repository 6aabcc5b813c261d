"""Load-average sampling: benchmarks run on shared machines, so each figure carries the load it ran under."""

from __future__ import annotations

import os
import threading


class LoadSampler:
    """Samples /proc/loadavg (1-minute figure) every second while in a ``with`` block."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self) -> LoadSampler:
        self.samples.append(os.getloadavg()[0])
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(os.getloadavg()[0])

    def summary(self) -> dict[str, float]:
        """Minimum, mean and maximum of the 1-minute load average over the block."""
        return {
            "load1_min": round(min(self.samples), 2),
            "load1_mean": round(sum(self.samples) / len(self.samples), 2),
            "load1_max": round(max(self.samples), 2),
        }
