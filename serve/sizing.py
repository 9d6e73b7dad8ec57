"""The embedding deployment's size for the machine it starts on, where the config says `auto`.

Fixed numbers tuned on one box are wrong on the next: on 16 cores a 2-core box's numbers leave 13
idle, and sixteen single-threaded replicas would each hold their own copy of the model and torch
(~0.4 GB). The rule, from what was measured here:
- streams per replica (`embedding.threads`): 1 up to 4 cores, as ONNX runs small batches faster as
  parallel single-threaded passes than as one multi-threaded pass (16 texts: 410 vs 327 texts/s) and
  replicas give that parallelism; above, cores // 4 per replica, so replicas stay few;
- replicas at most (`autoscaling.max_replicas`): enough streams for every core;
- replicas at least (`autoscaling.min_replicas`): all of them up to 4 cores. Starting a replica costs
  about 20 s of one core, longer than the burst that asked for it lasts on a small machine: on 2 cores,
  1 replica scaling to 3 during a burst reached 169 events/s and then 1.2 s p50 at 25 events/s while
  the new ones started; 2 replicas up from the start reached 370 events/s, 19 ms p50 at 25 events/s
  (bench-freshness, one run each, same box and hour). Above 4 cores a start takes a small share of
  the machine, so the deployment starts with one and autoscales;
- Ray CPUs per replica (`num_cpus`): the replicas share 80 % of the cores at most, half of them on up
  to 4 cores, where every replica is always there and the consumers (0.1 each) must fit beside them
  (2 cores: 10 partitions). A replica still uses a whole core when it has the work: Ray's CPUs only
  place actors.
The model's own speed is measured by each replica as it starts (`Embedder.info()`: a lone text on one
stream); `freshvec run` logs it with the choice, and `freshvec status` shows both.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

from freshvec.core.config import FreshvecConfig

REPLICA_SHARE = 0.8  # of the cores, for the replicas together at most
SMALL_MACHINE_REPLICA_SHARE = 0.5  # where they are all always there
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
    min_replicas: int = 1

    def line(self) -> str:
        speed = (f"; the model takes {self.lone_text_ms:.1f} ms for a lone text on one stream"
                 if self.lone_text_ms is not None else "")
        slow = (f" (over the {LONE_TEXT_BUDGET_MS:.0f} ms a lone event should wait: a GPU or a smaller model "
                "would help)" if self.lone_text_ms is not None and self.lone_text_ms > LONE_TEXT_BUDGET_MS else "")
        count = (f"{self.max_replicas} replicas (all started at once)" if self.min_replicas == self.max_replicas
                 else f"{self.min_replicas} to {self.max_replicas} replicas")
        return (f"sizing for {self.cores:g} CPUs ({', '.join(self.auto)} auto): {count} x {self.streams} "
                f"stream(s), {self.num_cpus:g} CPU each{speed}{slow}")

    def as_dict(self) -> dict:
        return asdict(self)


def choose(cores: float) -> tuple[int, int, float, int]:
    """(streams per replica, replicas at most, Ray CPUs per replica, replicas at least) for `cores` CPUs."""
    whole = max(1, int(cores))
    small = whole <= SMALL_MACHINE_CORES
    streams = 1 if small else whole // SMALL_MACHINE_CORES
    replicas = max(1, whole // streams)
    share = SMALL_MACHINE_REPLICA_SHARE if small else REPLICA_SHARE
    num_cpus = max(0.05, math.floor(20 * share * cores / replicas) / 20)
    return streams, replicas, num_cpus, replicas if small else 1


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
    scaling = emb.autoscaling
    auto = tuple(name for name, value in (("embedding.threads", emb.threads), ("embedding.num_cpus", emb.num_cpus),
                                          ("embedding.autoscaling.min_replicas", scaling.min_replicas),
                                          ("embedding.autoscaling.max_replicas", scaling.max_replicas))
                 if value == "auto")
    if not auto:
        return cfg, None
    cores = machine_cores() if cores is None else cores
    streams, replicas, num_cpus, least = choose(cores)
    streams = streams if emb.threads == "auto" else (emb.threads or max(1, math.ceil(num_cpus)))
    num_cpus = num_cpus if emb.num_cpus == "auto" else emb.num_cpus
    if scaling.max_replicas != "auto":
        replicas = scaling.max_replicas
    least = min(least, replicas) if scaling.min_replicas == "auto" else scaling.min_replicas
    replicas = max(replicas, least)
    embedding = emb.model_copy(update={
        "threads": streams, "num_cpus": num_cpus,
        "autoscaling": scaling.model_copy(update={"min_replicas": least, "max_replicas": replicas})})
    return (cfg.model_copy(update={"embedding": embedding}),
            Sizing(cores, streams, replicas, num_cpus, auto, min_replicas=least))
