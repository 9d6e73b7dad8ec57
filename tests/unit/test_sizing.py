"""`auto` settings of the embedding deployment, sized for the machine (serve/sizing.py)."""

from __future__ import annotations

import pytest

from freshvec.core.config import parse_config
from freshvec.serve.sizing import LONE_TEXT_BUDGET_MS, Sizing, choose, sized


@pytest.mark.parametrize("cores, expected", [
    (1, (1, 2, 0.4)),
    (2, (1, 3, 0.5)),  # what was tuned by hand on this project's 2-core machines
    (4, (1, 5, 0.6)),
    (8, (2, 4, 1.6)),
    (16, (4, 4, 3.2)),
    (64, (16, 4, 12.8)),
])
def test_small_machines_get_single_threaded_replicas_one_more_than_cores_and_big_ones_few_replicas(cores, expected):
    streams, replicas, num_cpus = choose(cores)
    assert (streams, replicas, num_cpus) == expected
    assert replicas * num_cpus <= 0.8 * cores + 1e-9  # room left to place the consumers


def test_only_auto_keys_are_sized_and_explicit_ones_are_kept():
    cfg = parse_config({"embedding": {"num_cpus": "auto", "threads": 2, "autoscaling": {"max_replicas": "auto"}}})
    out, sizing = sized(cfg, cores=2)
    assert (out.embedding.num_cpus, out.embedding.threads, out.embedding.autoscaling.max_replicas) == (0.5, 2, 3)
    assert sizing.auto == ("embedding.num_cpus", "embedding.autoscaling.max_replicas")
    assert sized(out, cores=2) == (out, None)  # nothing left to size: a second pass changes nothing

    plain = parse_config({"embedding": {"num_cpus": 0.25, "threads": 1, "autoscaling": {"max_replicas": 2}}})
    assert sized(plain, cores=64) == (plain, None)


def test_min_replicas_above_the_sized_maximum_wins():
    cfg = parse_config({"embedding": {"autoscaling": {"min_replicas": 4, "max_replicas": "auto"}}})
    out, _ = sized(cfg, cores=2)
    assert out.embedding.autoscaling.max_replicas == 4


def test_the_local_config_sizes_itself():
    from freshvec.core.config import load_config

    out, sizing = sized(load_config("deploy/local/freshvec.yaml"), cores=2)
    assert sizing is not None and len(sizing.auto) == 3
    assert (out.embedding.num_cpus, out.embedding.threads, out.embedding.autoscaling.max_replicas) == (0.5, 1, 3)


def test_a_slow_model_is_said_to_be_slow():
    fast = Sizing(2.0, 1, 3, 0.5, ("embedding.threads",), lone_text_ms=8.0)
    slow = Sizing(2.0, 1, 3, 0.5, ("embedding.threads",), lone_text_ms=LONE_TEXT_BUDGET_MS + 10)
    assert "a GPU or a smaller model" not in fast.line() and "8.0 ms" in fast.line()
    assert "a GPU or a smaller model" in slow.line()
