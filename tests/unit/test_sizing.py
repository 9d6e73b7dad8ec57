"""`auto` settings of the embedding deployment, sized for the machine (serve/sizing.py)."""

from __future__ import annotations

import pytest

from freshvec.core.config import parse_config
from freshvec.serve.sizing import LONE_TEXT_BUDGET_MS, Sizing, choose, sized


@pytest.mark.parametrize("cores, expected", [
    (1, (1, 1, 0.5, 1)),
    (2, (1, 2, 0.5, 2)),  # all started at once: a replica start costs more than a burst lasts here
    (4, (1, 4, 0.5, 4)),
    (8, (2, 4, 1.6, 1)),
    (16, (4, 4, 3.2, 1)),
    (64, (16, 4, 12.8, 1)),
])
def test_small_machines_start_a_single_threaded_replica_per_core_and_big_ones_autoscale_few(cores, expected):
    streams, replicas, num_cpus, least = choose(cores)
    assert (streams, replicas, num_cpus, least) == expected
    assert replicas * num_cpus <= 0.8 * cores + 1e-9  # room left to place the consumers


def test_only_auto_keys_are_sized_and_explicit_ones_are_kept():
    cfg = parse_config({"embedding": {"num_cpus": "auto", "threads": 2, "autoscaling": {"max_replicas": "auto"}}})
    out, sizing = sized(cfg, cores=2)
    assert (out.embedding.num_cpus, out.embedding.threads, out.embedding.autoscaling.max_replicas) == (0.5, 2, 2)
    assert out.embedding.autoscaling.min_replicas == 1  # not auto: kept
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
    assert sizing is not None and len(sizing.auto) == 4
    auto = out.embedding.autoscaling
    assert (out.embedding.num_cpus, out.embedding.threads, auto.min_replicas, auto.max_replicas) == (0.5, 1, 2, 2)
    assert "2 replicas (all started at once) x 1 stream(s), 0.5 CPU each" in sizing.line()
    big, sizing = sized(load_config("deploy/local/freshvec.yaml"), cores=16)
    assert (big.embedding.autoscaling.min_replicas, big.embedding.autoscaling.max_replicas) == (1, 4)
    assert "1 to 4 replicas x 4 stream(s)" in sizing.line()


def test_an_auto_minimum_never_exceeds_an_explicit_maximum():
    cfg = parse_config({"embedding": {"autoscaling": {"min_replicas": "auto", "max_replicas": 1}}})
    out, _ = sized(cfg, cores=4)
    assert (out.embedding.autoscaling.min_replicas, out.embedding.autoscaling.max_replicas) == (1, 1)


def test_a_slow_model_is_said_to_be_slow():
    fast = Sizing(2.0, 1, 3, 0.5, ("embedding.threads",), lone_text_ms=8.0)
    slow = Sizing(2.0, 1, 3, 0.5, ("embedding.threads",), lone_text_ms=LONE_TEXT_BUDGET_MS + 10)
    assert "a GPU or a smaller model" not in fast.line() and "8.0 ms" in fast.line()
    assert "a GPU or a smaller model" in slow.line()
