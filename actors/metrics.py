"""The pipeline's metrics, exported through Ray's Prometheus endpoint (and so the Ray dashboard).

All names start with `freshvec_`; Ray exports them as `ray_freshvec_*` (counters with `_total`). Tags:
region, topic, partition; DLQ records also by reason, retries by target.
"""

from __future__ import annotations

import numpy as np
from ray.util.metrics import Counter, Gauge, Histogram

TAGS = ("region", "topic", "partition")
# 2 ms .. 10 s in ~12 % steps: fine enough to read p50 and p99 anywhere in that range.
LATENCY_BOUNDARIES_MS = [float(round(b, 2)) for b in np.geomspace(2, 10_000, 75)]
BATCH_BOUNDARIES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]


class PipelineMetrics:
    """One set per consumer actor; `tags` are fixed at creation."""

    def __init__(self, region: str, topic: str, partition: int):
        self.tags = {"region": region, "topic": topic, "partition": str(partition)}
        self.freshness = Histogram("freshvec_freshness_ms", "Event timestamp to Weaviate acknowledgement (ms).",
                                   boundaries=LATENCY_BOUNDARIES_MS, tag_keys=TAGS)
        self.lag = Gauge("freshvec_consumer_lag", "Log end offset minus committed offset.", tag_keys=TAGS)
        self.records = Counter("freshvec_records",
                               "Records by outcome: consumed, upserted, deleted; chunks: embedded, "
                               "skipped_unchanged (vector reused), chunks_written.",
                               tag_keys=(*TAGS, "outcome"))
        self.dlq = Counter("freshvec_dlq_records", "Records sent to the dead-letter topic.",
                           tag_keys=(*TAGS, "reason"))
        self.batch_size = Histogram("freshvec_batch_size", "Records per embed call and per upsert.",
                                    boundaries=BATCH_BOUNDARIES, tag_keys=(*TAGS, "stage"))
        self.stage_ms = Histogram("freshvec_stage_latency_ms", "Latency of embed calls and Weaviate upserts (ms).",
                                  boundaries=LATENCY_BOUNDARIES_MS, tag_keys=(*TAGS, "stage"))
        self.stuck = Gauge("freshvec_consumer_stuck_seconds",
                           "How long the partition has failed on the same offset (0 while it flows).", tag_keys=TAGS)
        self.failed = Gauge("freshvec_consumer_failed",
                            "1 when the consumer stopped on an error no retry can fix (see freshvec status).",
                            tag_keys=TAGS)
        self.retries = Counter("freshvec_retries", "Retried calls after a transient failure.",
                               tag_keys=(*TAGS, "target"))

    def count(self, outcome: str, n: int) -> None:
        if n:
            self.records.inc(n, tags={**self.tags, "outcome": outcome})

    def stage(self, stage: str, size: int, seconds: float) -> None:
        tags = {**self.tags, "stage": stage}
        self.batch_size.observe(size, tags=tags)
        self.stage_ms.observe(seconds * 1000, tags=tags)

    def observe_freshness(self, latencies_ms: list[float]) -> None:
        for lat in latencies_ms:
            self.freshness.observe(max(lat, 0.0), tags=self.tags)

    def dead_letter(self, reason: str) -> None:
        self.dlq.inc(1, tags={**self.tags, "reason": reason})

    def retry(self, target: str) -> None:
        self.retries.inc(1, tags={**self.tags, "target": target})

    def set_stuck(self, seconds: float) -> None:
        self.stuck.set(seconds, tags=self.tags)

    def set_lag(self, lag: int) -> None:
        self.lag.set(lag, tags=self.tags)

    def set_failed(self, failed: bool) -> None:
        self.failed.set(1.0 if failed else 0.0, tags=self.tags)
