"""load_algorithm: the built-ins by name, and third-party algorithms through entry points."""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

import pytest

from otel_lightning.algorithms import (
    APO,
    Algorithm,
    BootstrapFewShot,
    EvolutionarySearch,
    SamplingSearch,
    available_algorithms,
    load_algorithm,
)
from otel_lightning.exceptions import ConfigError

PLUGIN = """
from otel_lightning.algorithms import Algorithm

class GreedySearch(Algorithm):
    algorithm_name = "greedy"

    def run(self, lightning):
        raise NotImplementedError

NOT_AN_ALGORITHM = object()
"""


def test_builtins_by_name_and_class_name() -> None:
    assert load_algorithm("bootstrap_fewshot") is BootstrapFewShot
    assert load_algorithm("BootstrapFewShot") is BootstrapFewShot
    assert load_algorithm("apo") is APO
    assert load_algorithm("sampling-search") is SamplingSearch
    assert load_algorithm("evolutionary_search") is EvolutionarySearch
    for name in ("apo", "bootstrap_fewshot", "sampling_search", "evolutionary_search"):
        assert load_algorithm(name).algorithm_name == name


def test_unknown_name() -> None:
    with pytest.raises(ConfigError, match="no algorithm called 'nope'; available: apo, "):
        load_algorithm("nope")


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A package installed the way pip installs one: a module and a dist-info with entry_points.txt."""
    (tmp_path / "algo_plugin_pkg.py").write_text(PLUGIN)
    info = tmp_path / "algo_plugin_pkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: algo-plugin-pkg\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[otel_lightning.algorithms]\n"
        "greedy = algo_plugin_pkg:GreedySearch\n"
        "broken = algo_plugin_pkg:NOT_AN_ALGORITHM\n"
        "missing = algo_plugin_pkg_missing:Thing\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield
    sys.modules.pop("algo_plugin_pkg", None)


def test_entry_point_plugins(plugin: None) -> None:
    cls = load_algorithm("greedy")
    assert issubclass(cls, Algorithm) and cls.__name__ == "GreedySearch"
    assert cls(name="g").name == "g"
    assert available_algorithms()["greedy"] == "algo_plugin_pkg:GreedySearch"
    assert "greedy" in {ep.name for ep in importlib.metadata.entry_points(group="otel_lightning.algorithms")}
    with pytest.raises(TypeError, match="not an otel_lightning Algorithm"):
        load_algorithm("broken")
    with pytest.raises(ConfigError, match="cannot be loaded"):
        load_algorithm("missing")
