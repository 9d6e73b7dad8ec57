"""The embedding deployment: one sentence-transformers model behind Ray Serve.

The consumers and the HTTP API both call it, so indexed vectors and query
vectors always come from the same model version. Requests are lists of texts;
``@serve.batch`` merges concurrent requests into one forward pass.
"""

from __future__ import annotations

import asyncio
import math
import os

import numpy as np
from ray import serve

from cluster.config import EmbeddingConfig

APP_NAME = "freshvec"
DEPLOYMENT_NAME = "Embedder"


def pick_device(requested: str) -> str:
    """cuda only when Ray gave this replica a GPU: a GPU node's other actors can still see one."""
    import ray

    has_gpu = bool(ray.get_gpu_ids())
    if requested == "cuda" and not has_gpu:
        raise RuntimeError("embedding.device is 'cuda' but Ray assigned no GPU; set embedding.num_gpus > 0")
    return "cuda" if requested == "cuda" or (requested == "auto" and has_gpu) else "cpu"


@serve.deployment(name=DEPLOYMENT_NAME)
class Embedder:
    def __init__(self, config: dict):
        import torch

        from serve.model import load_sentence_transformer

        cfg = EmbeddingConfig.model_validate(config)
        self.device = pick_device(cfg.device)
        if self.device == "cpu":
            torch.set_num_threads(cfg.torch_threads or max(1, math.ceil(cfg.num_cpus)))
        self.model_name = cfg.model
        self.model = load_sentence_transformer(cfg.model, device=self.device)
        if self.device == "cuda":
            self.model.half()
        self.dim = self.model.get_embedding_dimension()
        self._embed_batch.set_max_batch_size(cfg.max_batch_size)
        self._embed_batch.set_batch_wait_timeout_s(cfg.batch_wait_timeout_s)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Normalized float32 vectors; texts past the model's max sequence length are truncated."""
        vectors = self.model.encode(texts, batch_size=len(texts), normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=False)
        return vectors.astype(np.float32, copy=False)

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.002)
    async def _embed_batch(self, requests: list[list[str]]) -> list[np.ndarray]:
        flat = [text for texts in requests for text in texts]
        vectors = await asyncio.to_thread(self.encode, flat)
        out, start = [], 0
        for texts in requests:
            out.append(vectors[start:start + len(texts)])
            start += len(texts)
        return out

    async def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return await self._embed_batch(list(texts))

    def info(self) -> dict:
        return {"model": self.model_name, "dim": self.dim, "device": self.device, "pid": os.getpid()}


def build_embedder(cfg: EmbeddingConfig):
    """The bound deployment, with resources and autoscaling from the config."""
    auto = cfg.autoscaling
    return Embedder.options(
        ray_actor_options={"num_cpus": cfg.num_cpus, "num_gpus": cfg.num_gpus},
        # Serve caps a batch at max_ongoing_requests: keep room for a full batch plus the next.
        max_ongoing_requests=2 * cfg.max_batch_size,
        autoscaling_config={
            "min_replicas": auto.min_replicas,
            "initial_replicas": max(1, auto.min_replicas),
            "max_replicas": auto.max_replicas,
            "target_ongoing_requests": auto.target_ongoing_requests,
            "upscale_delay_s": auto.upscale_delay_s,
            "downscale_delay_s": auto.downscale_delay_s,
        },
    ).bind(cfg.model_dump())
