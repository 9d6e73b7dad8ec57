"""Device choice for embedding replicas: from the GPUs Ray assigned, not from what torch can see."""

import pytest

from freshvec.core.errors import ConfigError
from freshvec.serve.embedder import pick_backend, pick_device


def test_auto_uses_cuda_only_with_an_assigned_gpu():
    assert pick_device("auto", [0]) == "cuda"
    assert pick_device("auto", []) == "cpu"


def test_cpu_stays_cpu_even_with_a_gpu():
    assert pick_device("cpu", [0]) == "cpu"


def test_cuda_without_an_assigned_gpu_says_how_to_fix_it():
    with pytest.raises(ConfigError, match="set embedding.num_gpus > 0"):
        pick_device("cuda", [])


def test_auto_backend_is_onnx_on_cpu_and_torch_on_cuda():
    assert pick_backend("auto", "cpu") == "onnx"
    assert pick_backend("auto", "cuda") == "torch"
    assert pick_backend("torch", "cpu") == "torch"


def test_onnx_on_cuda_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match="use 'torch' or 'auto'"):
        pick_backend("onnx", "cuda")
