"""Device choice for embedding replicas: from the GPUs Ray assigned, not from what torch can see."""

import pytest

from serve.embedder import pick_device


def test_auto_uses_cuda_only_with_an_assigned_gpu():
    assert pick_device("auto", [0]) == "cuda"
    assert pick_device("auto", []) == "cpu"


def test_cpu_stays_cpu_even_with_a_gpu():
    assert pick_device("cpu", [0]) == "cpu"


def test_cuda_without_an_assigned_gpu_says_how_to_fix_it():
    with pytest.raises(RuntimeError, match="set embedding.num_gpus > 0"):
        pick_device("cuda", [])
