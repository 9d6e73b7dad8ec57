"""The embedding deployment's size for the machine it starts on, where the config says `auto`.

Fixed numbers tuned on one box (three single-threaded replicas at half a CPU each, on 2 cores) are
wrong on the next: on 16 cores they leave 13 idle, and sixteen single-threaded replicas would each
hold their own copy of the model and torch (~0.4 GB). The rule, from what was measured here:
- streams per replica (`embedding.threads`): 1 up to 4 cores, as ONNX runs small batches faster as
  parallel single-threaded passes than as one multi-threaded pass (16 texts: 410 vs 327 texts/s) and
  replicas give that parallelism; above, cores // 4 per replica, so replicas stay few;
- replicas at most (`autoscaling.max_replicas`): enough streams for every core, plus one on up to 4
  cores, so one replica parses HTTP while another runs the model (16 clients x 1 text: 289-306 ->
  315-331 texts/s);
- Ray CPUs per replica (`num_cpus`): 80 % of the cores shared by the replicas at most, leaving room
  to place the consumers (0.1 each) beside them.
The model's own speed is measured by each replica as it starts (`Embedder.info()`: a lone text on one
stream); `freshvec run` logs it with the choice, and `freshvec status` shows both.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

from freshvec.core.config import FreshvecConfig

REPLICA_SHARE = 0.8  # of the cores, for the replicas together at most
SMALL_MACHINE_CORES = 4
# A lone event should not wait longer than this in the model: above it, `freshvec run` says so.
LONE_TEXT_BUDGET_MS = 25.0


@dataclass(frozen=True)
class Sizing:
    cores: float
    streams: int  # single-threaded passes per replica (embedding.threads)
    max_replicas: int
    num_cpus: float  # Ray CPUs per replica
    auto: tuple[str, ...]  # which config keys were `auto`
    lone_text_ms: float | None = None  # measured by a replica: one text on one stream

    def line(self) -> str:
        speed = (f"; the model takes {self.lone_text_ms:.1f} ms for a lone text on one stream"
                 if self.lone_text_ms is not None else "")
        slow = (f" (over the {LONE_TEXT_BUDGET_MS:.0f} ms a lone event should wait: a GPU or a smaller model "
                "would help)" if self.lone_text_ms is not None and self.lone_text_ms > LONE_TEXT_BUDGET_MS else "")
        return (f"sizing for {self.cores:g} CPUs ({', '.join(self.auto)} auto): up to {self.max_replicas} "
                f"replicas x {self.streams} stream(s), {self.num_cpus:g} CPU each{speed}{slow}")

    def as_dict(self) -> dict:
        return asdict(self)


def choose(cores: float) -> tuple[int, int, float]:
    """(streams per replica, replicas at most, Ray CPUs per replica) for `cores` CPUs."""
    whole = max(1, int(cores))
    streams = 1 if whole <= SMALL_MACHINE_CORES else whole // SMALL_MACHINE_CORES
    replicas = max(1, whole // streams) + (1 if whole <= SMALL_MACHINE_CORES else 0)
    num_cpus = max(0.05, math.floor(20 * REPLICA_SHARE * cores / replicas) / 20)
    return streams, replicas, num_cpus


def machine_cores() -> float:
    """The CPUs Ray has (the cluster's), else this machine's."""
    try:
        import ray

        if ray.is_initialized():
            return float(ray.cluster_resources().get("CPU", os.cpu_count() or 1))
    except Exception:
        pass
    return float(os.cpu_count() or 1)


def sized(cfg: FreshvecConfig, cores: float | None = None) -> tuple[FreshvecConfig, Sizing | None]:
    """`cfg` with every `auto` of the embedding deployment replaced (None sizing when there is none)."""
    emb = cfg.embedding
    auto = tuple(name for name, value in (("embedding.threads", emb.threads), ("embedding.num_cpus", emb.num_cpus),
                                          ("embedding.autoscaling.max_replicas", emb.autoscaling.max_replicas))
                 if value == "auto")
    if not auto:
        return cfg, None
    cores = machine_cores() if cores is None else cores
    streams, replicas, num_cpus = choose(cores)
    streams = streams if emb.threads == "auto" else (emb.threads or max(1, math.ceil(num_cpus)))
    replicas = replicas if emb.autoscaling.max_replicas == "auto" else emb.autoscaling.max_replicas
    num_cpus = num_cpus if emb.num_cpus == "auto" else emb.num_cpus
    replicas = max(replicas, emb.autoscaling.min_replicas)
    embedding = emb.model_copy(update={
        "threads": streams, "num_cpus": num_cpus,
        "autoscaling": emb.autoscaling.model_copy(update={"max_replicas": replicas})})
    return (cfg.model_copy(update={"embedding": embedding}),
            Sizing(cores, streams, replicas, num_cpus, auto))
