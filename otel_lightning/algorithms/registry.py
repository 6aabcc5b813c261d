"""Finding algorithms by name: the built-ins, and third-party ones registered as entry points.

A package ships an algorithm by subclassing :class:`~otel_lightning.algorithms.base.Algorithm` and
registering it in the ``otel_lightning.algorithms`` entry-point group::

    [project.entry-points."otel_lightning.algorithms"]
    my_search = "my_package.search:MySearch"

``load_algorithm("my_search")`` then returns the class. Names match case-insensitively, with ``-`` and ``_``
alike; a built-in is also found by its class name (``BootstrapFewShot``).
"""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points

from otel_lightning.algorithms.base import Algorithm
from otel_lightning.exceptions import ConfigError

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "otel_lightning.algorithms"
"""The entry-point group third-party algorithms register under."""

BUILTIN_ALGORITHMS = {
    "apo": "otel_lightning.algorithms.apo:APO",
    "bootstrap_fewshot": "otel_lightning.algorithms.fewshot:BootstrapFewShot",
    "evolutionary_search": "otel_lightning.algorithms.evolution:EvolutionarySearch",
    "sampling_search": "otel_lightning.algorithms.sampling:SamplingSearch",
}
"""Built-in algorithm name -> ``module:class``."""


def _normal(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def available_algorithms() -> dict[str, str]:
    """Every algorithm name that :func:`load_algorithm` knows -> where it comes from (``module:attr``)."""
    found = dict(BUILTIN_ALGORITHMS)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return found


def load_algorithm(name: str) -> type[Algorithm]:
    """The algorithm class called ``name``: a built-in, or an ``otel_lightning.algorithms`` entry point.

    Raises:
        ConfigError: no algorithm has that name.
        TypeError: the entry point is not an :class:`Algorithm` subclass.
    """
    wanted = _normal(name)
    for key, target in BUILTIN_ALGORITHMS.items():
        class_name = target.rsplit(":", 1)[1]
        if wanted in (key, class_name.lower()):
            module, attr = target.split(":")
            return _checked(getattr(importlib.import_module(module), attr), target)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if _normal(ep.name) == wanted:
            try:
                loaded = ep.load()
            except Exception as exc:
                raise ConfigError(f"algorithm {name!r} ({ep.value}) cannot be loaded: {exc}") from exc
            return _checked(loaded, ep.value)
    known = ", ".join(sorted(available_algorithms()))
    raise ConfigError(f"no algorithm called {name!r}; available: {known}")


def _checked(value: object, where: str) -> type[Algorithm]:
    if not (isinstance(value, type) and issubclass(value, Algorithm)):
        raise TypeError(f"{where} is not an otel_lightning Algorithm subclass")
    return value
