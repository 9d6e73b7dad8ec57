"""One Ray actor per Kafka partition: poll, embed through Serve, upsert into Weaviate, commit.

The loop runs in a thread started by the constructor, so when Ray restarts a
dead actor the new instance resumes on its own from the group's committed
offset. An offset is committed only after Weaviate confirmed every object up
to it (and the DLQ every rejected record), so a crash anywhere replays, and
idempotent writes make a replay harmless: no loss, no duplicates.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import threading
import time
from collections import deque

import numpy as np
import ray
from tenacity import Retrying, retry_if_exception, wait_exponential_jitter

from actors.freshness import FreshnessWindow
from actors.metrics import PipelineMetrics
from actors.records import Delete, Rejected, Upsert, latest_per_key, parse
from actors.sink import Embedded, WeaviateSink
from actors.state import ContentStore
from cluster.config import FreshvecConfig
from cluster.errors import EmbedError, TransientError

log = logging.getLogger("freshvec.consumer")

POLL_TIMEOUT_MS = 100


def _rss_mb() -> float:
    """Resident memory of this process, for the backpressure bound (see README)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def actor_name(topic: str, partition: int) -> str:
    """What the Ray dashboard and `ray list actors` show for a consumer."""
    return f"consumer:{topic}:{partition}"


class PartitionConsumer:
    """Consumes exactly one partition; see the module docstring for the guarantees."""

    def __init__(self, cfg: FreshvecConfig, topic: str, partition: int, model: str, dim: int,
                 region: str = "local", zone_label_key: str = "zone", zone_racks: dict[str, str] | None = None):
        self.cfg = cfg
        self.topic, self.partition, self.model, self.dim = topic, partition, model, dim
        self.state = "starting"
        self.counters = dict(consumed=0, upserted=0, deleted=0, skipped_unchanged=0, dead_lettered=0,
                             embedded=0, retries=0, batches=0)
        self.committed: int | None = None
        self.freshness = FreshnessWindow(window_s=60.0)
        self._recent: deque[float] = deque(maxlen=200_000)  # latencies for `drain_latencies`
        self._store = ContentStore(self.cfg.pipeline.state_max_keys)
        self.region = region
        # The zone of the node Ray put us on decides client_rack: fetch from the nearest replica.
        zone = ray.get_runtime_context().get_node_labels().get(zone_label_key)
        self.client_rack = (zone_racks or {}).get(zone)
        self.metrics = PipelineMetrics(self.region, topic, partition)
        self.lag: int | None = None
        self._position = None  # (consumer, partition) of the current session, for lag updates
        self._gc_frozen = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=actor_name(topic, partition), daemon=True)
        self._thread.start()

    # --- called by the supervisor, `freshvec status` and benchmarks ---------------
    def stats(self) -> dict:
        ctx = ray.get_runtime_context()
        return {
            "topic": self.topic, "partition": self.partition, "state": self.state, "region": self.region,
            "node_id": ctx.get_node_id(), "labels": ctx.get_node_labels(),
            "committed": self.committed, "lag": self.lag, **self.counters, **self.freshness.percentiles(),
            "throughput_eps": self.freshness.rate(), "pid": os.getpid(), "rss_mb": _rss_mb(),
        }

    def drain_latencies(self) -> list[float]:
        """Event -> acknowledgement latencies (ms) recorded since the last call."""
        out = list(self._recent)
        self._recent.clear()
        return out

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    # --- the loop -----------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._session()
            except Exception:  # anything unforeseen: start over from the committed offset
                log.exception("%s: restarting from the committed offset", actor_name(self.topic, self.partition))
                self.state = "recovering"
                self._stop.wait(1.0)

    def _session(self) -> None:
        from kafka import KafkaConsumer, KafkaProducer, TopicPartition
        from kafka.structs import OffsetAndMetadata
        from ray import serve

        from serve.embedder import APP_NAME, DEPLOYMENT_NAME

        kafka = self.cfg.kafka
        tp = TopicPartition(self.topic, self.partition)
        rack = {"client_rack": self.client_rack} if self.client_rack else {}
        consumer = KafkaConsumer(
            bootstrap_servers=kafka.bootstrap_servers, group_id=kafka.group_id,
            enable_auto_commit=False, auto_offset_reset="earliest", **{**kafka.consumer, **rack},
        )
        dlq = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, **kafka.producer)
        sink = WeaviateSink(self.cfg.weaviate, self.model, self.dim)
        acked = None  # the offset after the last record Weaviate (or the DLQ) confirmed
        try:
            consumer.assign([tp])  # one partition, no group rebalancing; offsets still commit to the group
            self._position = (consumer, tp)
            self.committed = consumer.committed(tp)
            if self.committed is not None:
                consumer.seek(tp, self.committed)
            handle = serve.get_deployment_handle(DEPLOYMENT_NAME, app_name=APP_NAME)
            # Warm up before the first record: the first handle call and the first Weaviate call set up
            # routers and connections (seconds on a busy box), which would otherwise land on real events.
            self.state = "warming up"
            self._retry(self._embed, handle, ["warm-up"], target="serve")
            self._retry(sink.open, target="weaviate")
            self._retry(sink.ping, target="weaviate")
            self._retry(consumer.position, tp, wrap=TransientError, target="kafka")  # the start offset, now
            self._freeze_gc()
            self.state = "running"
            last_log = last_lag = last_commit = 0.0
            while not self._stop.is_set():
                records = self._next_batch(consumer, tp)
                if records:
                    self._process(records, handle, sink, dlq)
                    acked = records[-1].offset + 1
                interval_s = self.cfg.pipeline.commit_interval_ms / 1000
                if acked is not None and acked != self.committed and (
                        not records or time.monotonic() - last_commit >= interval_s):
                    self._retry(consumer.commit, {tp: OffsetAndMetadata(acked, "", -1)}, wrap=TransientError,
                                target="kafka")
                    self.committed, last_commit = acked, time.monotonic()
                if time.monotonic() - last_lag >= 1.0:
                    self._update_lag(consumer, tp)
                    last_lag = time.monotonic()
                if time.monotonic() - last_log >= self.cfg.pipeline.freshness_log_interval_s:
                    self._log_freshness()
                    last_log = time.monotonic()
        finally:
            if self._stop.is_set() and acked is not None and acked != self.committed:
                with contextlib.suppress(Exception):  # best effort: a replay of these is harmless
                    consumer.commit({tp: OffsetAndMetadata(acked, "", -1)})
                    self.committed = acked
            self._position = None
            self.state = "stopped" if self._stop.is_set() else self.state
            consumer.close(autocommit=False)
            dlq.close(timeout=5)
            sink.close()

    def _freeze_gc(self) -> None:
        """Leave start-up's objects out of every later garbage collection, as Serve does for replicas.

        Imports and clients leave ~190k long-lived objects; the first full collection a few seconds
        into a stream then stalled each consumer for ~180 ms, the worst events of a run.
        """
        if not self._gc_frozen:
            gc.collect()
            gc.freeze()
            self._gc_frozen = True

    def _update_lag(self, consumer, tp) -> None:
        """Log end offset minus committed offset; the whole log counts while nothing is committed."""
        try:
            end = consumer.end_offsets([tp])[tp]
        except Exception:  # the broker is away: keep the last value
            return
        start = self.committed if self.committed is not None else consumer.beginning_offsets([tp])[tp]
        self.lag = max(end - start, 0)
        self.metrics.set_lag(self.lag)

    def _next_batch(self, consumer, tp) -> list:
        """Up to max_batch_records records; waits at most max_batch_wait_ms once the first arrived."""
        pipeline = self.cfg.pipeline
        batch = consumer.poll(timeout_ms=POLL_TIMEOUT_MS, max_records=pipeline.max_batch_records).get(tp, [])
        if not batch:
            return []
        deadline = time.monotonic() + pipeline.max_batch_wait_ms / 1000
        while len(batch) < pipeline.max_batch_records and time.monotonic() < deadline:
            more = consumer.poll(timeout_ms=0, max_records=pipeline.max_batch_records - len(batch)).get(tp, [])
            if not more:
                time.sleep(0.0005)
                continue
            batch.extend(more)
        return batch

    def _process(self, records, handle, sink: WeaviateSink, dlq) -> None:
        pipeline = self.cfg.pipeline
        ops = [parse(r, pipeline.event, pipeline.max_text_bytes) for r in records]
        rejected = [op for op in ops if isinstance(op, Rejected)]
        if rejected:
            self._retry(self._dead_letter, dlq, rejected, wrap=TransientError, target="kafka")

        latest = latest_per_key(op for op in ops if not isinstance(op, Rejected))
        upserts = [op for op in latest if isinstance(op, Upsert)]
        deletes = [op for op in latest if isinstance(op, Delete)]
        cached = {u.key: self._store.vector_if_unchanged(u.key, u.text) for u in upserts}
        to_embed = [u for u in upserts if cached[u.key] is None]
        t0 = time.perf_counter()
        vectors = self._retry(self._embed, handle, [u.text for u in to_embed], target="serve") if to_embed else []
        t1 = time.perf_counter()
        if to_embed:
            self.metrics.stage("embed", len(to_embed), t1 - t0)
        fresh = dict(zip((u.key for u in to_embed), vectors))
        items = [Embedded(u, cached[u.key] if cached[u.key] is not None else fresh[u.key]) for u in upserts]

        self._retry(sink.write, items, deletes, target="weaviate")
        self.metrics.stage("upsert", len(items) + len(deletes), time.perf_counter() - t1)
        ack_ms = time.time() * 1000
        latencies = [ack_ms - r.timestamp for r, op in zip(records, ops) if not isinstance(op, Rejected)]
        self.freshness.add(latencies)
        self._recent.extend(latencies)
        self.metrics.observe_freshness(latencies)
        for item in items:
            self._store.remember(item.op.key, item.op.text, item.vector)
        for d in deletes:
            self._store.forget(d.key)
        counts = {"consumed": len(records), "upserted": len(items), "deleted": len(deletes),
                  "embedded": len(to_embed), "skipped_unchanged": len(upserts) - len(to_embed)}
        for outcome, n in counts.items():
            self.counters[outcome] += n
            self.metrics.count(outcome, n)
        self.counters["batches"] += 1

    def _embed(self, handle, texts: list[str]) -> np.ndarray:
        try:
            vectors = handle.embed.remote(texts).result(timeout_s=30)
        except Exception as exc:  # Serve down, restarting or slow: all retriable
            raise EmbedError(f"embedding {len(texts)} texts failed: {type(exc).__name__}: {exc}") from exc
        if vectors.shape != (len(texts), self.dim):
            raise EmbedError(f"embedder returned shape {vectors.shape}, expected ({len(texts)}, {self.dim})")
        return vectors

    def _dead_letter(self, dlq, rejected: list[Rejected]) -> None:
        from kafka.errors import MessageSizeTooLargeError

        futures = []
        for r in rejected:
            headers = [("reason", r.reason.encode()), ("detail", r.detail.encode()[:1000]),
                       ("source.topic", r.source.topic.encode()),
                       ("source.partition", str(r.source.partition).encode()),
                       ("source.offset", str(r.source.offset).encode())]
            try:
                futures.append(dlq.send(self.cfg.pipeline.dlq_topic, key=r.key, value=r.value, headers=headers))
            except MessageSizeTooLargeError:
                # Too big for the DLQ: keep the reason and where to find the original.
                headers.append(("value.truncated_from", str(len(r.value or b"")).encode()))
                futures.append(dlq.send(self.cfg.pipeline.dlq_topic, key=r.key, value=(r.value or b"")[:65536],
                                        headers=headers))
        try:
            for f in futures:
                f.get(timeout=30)
        except Exception as exc:
            raise TransientError(f"writing {len(rejected)} records to the DLQ failed: {exc}") from exc
        self.counters["dead_lettered"] += len(rejected)
        for r in rejected:
            self.metrics.dead_letter(r.reason)
            log.warning("%s offset %d -> DLQ: %s (%s)", r.source.topic, r.source.offset, r.reason, r.detail)

    def _retry(self, fn, *args, wrap: type[Exception] | None = None, target: str = "kafka"):
        """Call fn until it succeeds or the actor stops; retriable errors back off, others raise."""
        state = self.state  # restored after a retry, so a warm-up step does not report "running"

        def call():
            try:
                return fn(*args)
            except TransientError:
                raise
            except Exception as exc:
                if wrap is None:
                    raise
                raise wrap(f"{getattr(fn, '__name__', fn)} failed: {exc}") from exc

        def before_sleep(retry_state) -> None:
            if self._position is not None:  # keep lag current while paused: the backlog grows in Kafka
                self._update_lag(*self._position)
            self.counters["retries"] += 1
            self.metrics.retry(target)
            self.state = "retrying"
            log.warning("%s: %s; retrying", actor_name(self.topic, self.partition), retry_state.outcome.exception())

        for attempt in Retrying(
            retry=retry_if_exception(lambda e: getattr(e, "retriable", False)),
            wait=wait_exponential_jitter(multiplier=0.05, max=self.cfg.pipeline.retry_max_backoff_s, jitter=0.05),
            stop=lambda _state: self._stop.is_set(),
            before_sleep=before_sleep, reraise=True,
        ):
            with attempt:
                result = call()
        self.state = state
        return result

    def _log_freshness(self) -> None:
        p = self.freshness.percentiles()
        if p["p50_ms"] is not None:
            log.info("%s freshness p50 %.1f ms p99 %.1f ms over %d records in the last 60 s",
                     actor_name(self.topic, self.partition), p["p50_ms"], p["p99_ms"], len(self.freshness))
