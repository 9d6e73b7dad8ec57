"""The embedding model behind Ray Serve: batching, device choice, normalized float32 vectors.

`EmbeddingModel` is the model half of the `Embedder` deployment (serve/app.py):
the consumers call its `embed` through a DeploymentHandle and the HTTP routes
call it in-process, so indexed vectors and query vectors always come from the
same model version. ``@serve.batch`` merges concurrent requests into one
forward pass.
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from ray import serve

from freshvec.core.config import EmbeddingConfig
from freshvec.core.errors import ConfigError
from freshvec.serve.autoscaling import CAPACITY_METRIC

CAPACITY_MIN_TEXTS = 32  # texts a replica embeds before its throughput counts as measured



def pick_device(requested: str, gpu_ids: list) -> str:
    """cuda only when Ray gave this replica a GPU (`ray.get_gpu_ids()`): on a GPU node, actors
    that asked for none can still see the device, so torch.cuda.is_available() is not the test."""
    has_gpu = bool(gpu_ids)
    if requested == "cuda" and not has_gpu:
        raise ConfigError("embedding.device is 'cuda' but Ray assigned no GPU; set embedding.num_gpus > 0")
    return "cuda" if requested == "cuda" or (requested == "auto" and has_gpu) else "cpu"


def pick_backend(requested: str, device: str) -> str:
    """ONNX Runtime on CPU (half torch's latency for one text, same vectors); torch (fp16) on CUDA,
    because the CPU build of onnxruntime that we install has no CUDA provider."""
    if requested == "onnx" and device == "cuda":
        raise ConfigError("embedding.backend 'onnx' runs on CPU only; use 'torch' or 'auto' on a GPU")
    if requested == "auto":
        return "onnx" if device == "cpu" else "torch"
    return requested


class EmbeddingModel:
    def __init__(self, cfg: EmbeddingConfig):
        import ray
        import torch

        from freshvec.serve.model import OnnxMeanPooling, load_sentence_transformer

        self.device = pick_device(cfg.device, ray.get_gpu_ids())
        self.backend = pick_backend(cfg.backend, self.device)
        # `auto` is resolved before a replica starts (serve/sizing.py); used alone, one stream.
        threads = cfg.threads if isinstance(cfg.threads, int) else (
            max(1, math.ceil(cfg.num_cpus)) if cfg.threads is None and cfg.num_cpus != "auto" else 1)
        # ONNX on CPU: `threads` single-threaded forward passes side by side, each on a share of the
        # batch. Small batches barely gain from intra-op threads (MiniLM, 16 texts: 2 threads 327/s,
        # 2 single-threaded passes 410/s), and parallel passes need no hand-off between cores.
        self._streams = threads if self.backend == "onnx" else 1
        self._pool = ThreadPoolExecutor(self._streams, "encode") if self._streams > 1 else None
        if self.device == "cpu":
            torch.set_num_threads(1 if self._pool else threads)
        self.model_name = cfg.model
        self.model = load_sentence_transformer(cfg.model, device=self.device, backend=self.backend,
                                               threads=1 if self._pool else threads)
        if self.device == "cuda":
            self.model.half()
        self._direct = OnnxMeanPooling.of(self.model) if self.backend == "onnx" else None
        self.dim = self.model.get_embedding_dimension()
        self.max_seq_length = self.model.max_seq_length
        # A forward pass per stream before the replica takes traffic: the first run of a session sets up
        # its buffers (tens of ms), which would otherwise land on a real request.
        self.encode(["warm-up"] * self._streams)
        # What a lone event costs here, reported by info() for the sizing line of `freshvec run`.
        self.lone_text_ms = float(np.median([self._timed_encode("how long does one text take?") for _ in range(3)]))
        self._busy_s, self._texts, self._capacity = 0.0, 0, 0.0  # for record_autoscaling_stats
        self._embed_batch.set_max_batch_size(cfg.max_batch_size)
        self._embed_batch.set_batch_wait_timeout_s(cfg.batch_wait_timeout_s)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Normalized float32 vectors; texts past the model's max sequence length are truncated."""
        streams = min(self._streams, len(texts))
        if streams < 2:
            return self._encode(texts)
        # Deal the texts out by length, so every pass pads alike and they finish together.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        shares = [order[k::streams] for k in range(streams)]
        parts = self._pool.map(self._encode, [[texts[i] for i in share] for share in shares])
        vectors = np.empty((len(texts), self.dim), dtype=np.float32)
        for share, part in zip(shares, parts):
            vectors[share] = part
        return vectors

    def _timed_encode(self, text: str) -> float:
        started = time.perf_counter()
        self.encode([text])
        return (time.perf_counter() - started) * 1000

    def _encode(self, texts: list[str]) -> np.ndarray:
        if self._direct is not None:
            return self._direct(texts)
        # Chunks of 32 after sentence-transformers' length sort pad less than one long batch
        # (256 texts: 381 -> 404 texts/s on ONNX); small batches are unaffected.
        vectors = self.model.encode(texts, batch_size=32, normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=False)
        return vectors.astype(np.float32, copy=False)

    def count_tokens(self, texts: list[str]) -> int:
        """Tokens the model sees (after truncation), for the OpenAI API's usage field."""
        encoded = self.model.tokenizer(texts, truncation=True, max_length=self.max_seq_length)
        return sum(len(ids) for ids in encoded["input_ids"])

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.0)
    async def _embed_batch(self, requests: list[list[str]]) -> list[np.ndarray | Exception]:
        flat = [text for texts in requests for text in texts]
        # On the replica's event loop, not in a thread: requests that arrive during a forward pass wait
        # in the socket and all join the next batch. A model thread would contend with the loop for
        # the GIL and the cores, and the loop then admits about one request per pass (batches of 1).
        started = time.perf_counter()
        try:
            vectors = self.encode(flat)
        except Exception:  # noqa: BLE001 - one caller's bad text must not fail the others batched with it
            return [self._encode_alone(texts) for texts in requests]
        self._busy_s += time.perf_counter() - started
        self._texts += len(flat)
        out, start = [], 0
        for texts in requests:
            out.append(vectors[start:start + len(texts)])
            start += len(texts)
        return out

    def _encode_alone(self, texts: list[str]) -> np.ndarray | Exception:
        try:
            return self.encode(texts)
        except Exception as exc:  # noqa: BLE001 - handed to this request's caller by `embed`
            return exc

    async def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        result = await self._embed_batch(list(texts))
        if isinstance(result, Exception):
            raise result
        return result

    def record_autoscaling_stats(self) -> dict[str, float]:
        """Serve asks each replica every metrics_interval_s: texts embedded per busy second, what one
        replica adds to the deployment's capacity (the backlog policy's divisor). Smoothed, and kept
        while the replica idles."""
        if self._texts >= CAPACITY_MIN_TEXTS and self._busy_s > 0:
            measured = self._texts / self._busy_s
            self._capacity = measured if not self._capacity else 0.5 * self._capacity + 0.5 * measured
            self._busy_s, self._texts = 0.0, 0
        return {CAPACITY_METRIC: self._capacity}

    def info(self) -> dict:
        import ray

        return {"model": self.model_name, "dim": self.dim, "device": self.device, "backend": self.backend,
                "pid": os.getpid(), "lone_text_ms": self.lone_text_ms,
                "node_id": ray.get_runtime_context().get_node_id()}
