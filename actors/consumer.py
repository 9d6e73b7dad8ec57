"""One Ray actor per Kafka partition: poll, embed through Serve, upsert into Weaviate, commit.

The loop runs in a thread started by the constructor, so when Ray restarts a
dead actor the new instance resumes on its own from the group's committed
offset. An offset is committed only after Weaviate confirmed every object up
to it (and the DLQ every rejected record), so a crash anywhere replays, and
idempotent writes make a replay harmless: no loss, no duplicates.

Two stages, one thread each: the poll thread parses a batch, sends its dead
letters and starts its embedding; the writer thread waits for the vectors and
writes to Weaviate, batch after batch in poll order (so per-key order holds).
A batch's embedding thus overlaps the previous batch's write, and at most three
batches are held while Weaviate is slow or away.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import gc
import logging
import os
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
import ray
from tenacity import Retrying, retry_if_exception, wait_exponential_jitter

from freshvec.actors.freshness import FreshnessWindow
from freshvec.actors.isolation import split_refused
from freshvec.actors.metrics import PipelineMetrics
from freshvec.core.records import Delete, KafkaRecord, Rejected, Upsert, latest_per_key, parse
from freshvec.core.store import Embedded, WeaviateStore
from freshvec.actors.state import ContentStore
from freshvec.core.kafka import CONSUMER, librdkafka, producer_config
from freshvec.core.config import FreshvecConfig
from freshvec.core.identity import APP_NAME, DEPLOYMENT_NAME, ModelInfo, consumer_name
from freshvec.core.errors import EmbedError, EmbedRejected, RecordRejected, TransientError, WriteRejected

log = logging.getLogger("freshvec.consumer")

POLL_TIMEOUT_S = 0.1
# librdkafka prefetches in the background; at most this much per partition, so while Weaviate is
# away the backlog stays in Kafka, not in this process (its default is 64 MB).
PREFETCH_KBYTES = 1024
# Embedded when the embedder refuses a lone text: if this passes, the embedder works and the text is poison.
PROBE_TEXT = "freshvec probe: the embedder answers"


def _rss_mb() -> float:
    """Resident memory of this process, for the backpressure bound (see README)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class _Batch:
    """A polled batch between the two stages: parsed, dead letters sent, its embedding under way."""

    records: list
    ops: list
    upserts: list[Upsert]
    deletes: list[Delete]
    cached: dict[str, np.ndarray | None]  # the stored vector of each upsert whose text is unchanged
    response: object | None = None  # the embed call's DeploymentResponse; None when nothing (yet) is sent
    started: float = 0.0  # perf_counter when the embedding was sent

    @property
    def to_embed(self) -> list[Upsert]:
        return [u for u in self.upserts if self.cached[u.key] is None]


def is_refusal(exc: BaseException) -> bool:
    """Did the embedder's own code raise (a refusal of these texts), rather than Serve or Ray fail to
    reach it (away, restarting, overloaded, slow: retried without limit)? Serve's gRPC mode raises the
    replica's exception as it is; its other modes wrap it in RayTaskError."""
    import grpc
    from ray.exceptions import RayError, RayTaskError
    from ray.serve.exceptions import RayServeException

    if isinstance(exc, RayTaskError):
        return True
    return not isinstance(exc, (RayError, RayServeException, grpc.RpcError, OSError, TimeoutError,
                                concurrent.futures.CancelledError))


class PartitionConsumer:
    """Consumes exactly one partition; see the module docstring for the guarantees."""

    def __init__(self, cfg: FreshvecConfig, topic: str, partition: int, model: ModelInfo,
                 region: str = "local", zone_label_key: str = "zone", zone_racks: dict[str, str] | None = None):
        self.cfg = cfg
        self.topic, self.partition, self.model = topic, partition, model
        self.name = consumer_name(region, topic, partition)
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
        # The failure the partition is stuck on, while it is: offset, error, attempts, since (epoch s).
        self.stuck: dict | None = None
        self._acked: int | None = None  # the offset after the last record Weaviate (or the DLQ) confirmed
        self._writing = False  # the writer is on a batch
        self._position = None  # (consumer, partition) of the current session, for lag updates
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    # --- called by the supervisor, `freshvec status` and benchmarks ---------------
    def stats(self) -> dict:
        ctx = ray.get_runtime_context()
        stuck = self.stuck  # one read: the writer thread may clear it meanwhile
        return {
            "topic": self.topic, "partition": self.partition, "state": self.state, "region": self.region,
            "node_id": ctx.get_node_id(), "labels": ctx.get_node_labels(),
            "committed": self.committed, "lag": self.lag, **self.counters, **self.freshness.percentiles(),
            "throughput_eps": self.freshness.rate(), "pid": os.getpid(), "rss_mb": _rss_mb(),
            "stuck": {**stuck, "for_s": round(time.time() - stuck["since"], 1)} if stuck else None,
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
            except Exception as exc:  # anything unforeseen: start over from the committed offset
                log.exception("%s: restarting from the committed offset", self.name)
                self._note_failure(exc)
                self.state = "recovering"
                self._stop.wait(1.0)

    def _session(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
        from ray import serve

        
        kafka = self.cfg.kafka
        tp = TopicPartition(self.topic, self.partition)
        rack = {"client_rack": self.client_rack} if self.client_rack else {}
        consumer = Consumer({
            "bootstrap.servers": ",".join(kafka.bootstrap_servers), "logger": log, "group.id": kafka.group_id,
            "enable.auto.commit": False, "auto.offset.reset": "earliest", "queued.max.messages.kbytes": PREFETCH_KBYTES,
            **librdkafka({**kafka.consumer, **rack}, CONSUMER),
        })
        dlq = Producer({**producer_config(kafka), "logger": log})
        sink = WeaviateStore(self.cfg.weaviate, self.model)
        self._acked = None  # set by the writer
        self._session_token = token = object()  # a writer left over from a failed session must not set it
        jobs: queue.Queue[_Batch] = queue.Queue(maxsize=1)
        failed: list[BaseException] = []
        closing = threading.Event()
        writer = None
        try:
            self._position = (consumer, tp)
            handle = serve.get_deployment_handle(DEPLOYMENT_NAME, app_name=APP_NAME)
            # Warm up before the first record: the first handle call and the first Weaviate call set up
            # routers and connections (seconds on a busy box), which would otherwise land on real events.
            self.state = "warming up"
            self._retry(self._embed, handle, ["warm-up"], target="serve")
            self._retry(sink.open, target="weaviate")
            self._retry(sink.ping, target="weaviate")
            self.committed = self._retry(self._committed, consumer, tp, wrap=TransientError, target="kafka")
            # One partition, no group rebalancing; offsets still commit to the group.
            start = self.committed if self.committed is not None else OFFSET_BEGINNING
            consumer.assign([TopicPartition(self.topic, self.partition, start)])
            self._freeze_gc()
            writer = threading.Thread(target=self._write_loop, args=(jobs, handle, sink, dlq, failed, closing, token),
                                      name=f"{self.name}:writer", daemon=True)
            writer.start()
            self.state = "running"
            last_log = last_lag = last_commit = 0.0
            while not self._stop.is_set():
                self._raise_if_failed(failed)
                records = self._next_batch(consumer)
                if records:
                    self._hand_over(jobs, self._prepare(records, handle, dlq), failed, consumer, tp)
                elif self.stuck is not None and jobs.empty() and not self._writing:
                    self._clear_failure()  # quiet, and nothing failing in flight
                acked = self._acked
                interval_s = self.cfg.pipeline.commit_interval_ms / 1000
                if acked is not None and acked != self.committed and (
                        not records or time.monotonic() - last_commit >= interval_s):
                    self._retry(self._commit, consumer, acked, wrap=TransientError, target="kafka")
                    self.committed, last_commit = acked, time.monotonic()
                if time.monotonic() - last_lag >= 1.0:
                    self._update_lag(consumer, tp, cached=True)
                    last_lag = time.monotonic()
                if time.monotonic() - last_log >= self.cfg.pipeline.freshness_log_interval_s:
                    self._log_freshness()
                    last_log = time.monotonic()
        finally:
            closing.set()
            if writer is not None:
                writer.join(10.0)
            acked = self._acked
            if self._stop.is_set() and acked is not None and acked != self.committed:
                with contextlib.suppress(Exception):  # best effort: a replay of these is harmless
                    self._commit(consumer, acked)
                    self.committed = acked
            self._position = None
            self.state = "stopped" if self._stop.is_set() else self.state
            consumer.close()
            dlq.flush(5)
            sink.close()

    @staticmethod
    def _committed(consumer, tp) -> int | None:
        """The group's committed offset of the partition; None when it has none yet."""
        from confluent_kafka import KafkaException

        (committed,) = consumer.committed([tp], timeout=10)
        if committed.error:
            raise KafkaException(committed.error)
        return committed.offset if committed.offset >= 0 else None

    def _commit(self, consumer, offset: int) -> None:
        from confluent_kafka import TopicPartition

        consumer.commit(offsets=[TopicPartition(self.topic, self.partition, offset)], asynchronous=False)

    @staticmethod
    def _raise_if_failed(failed: list[BaseException]) -> None:
        if failed:
            raise RuntimeError(f"the writer stopped: {failed[0]!r}") from failed[0]

    def _hand_over(self, jobs: queue.Queue, batch: _Batch, failed: list[BaseException], consumer, tp) -> None:
        """Queue a batch for the writer. While the writer is busy (Weaviate slow or away) the poll thread
        waits here, so no more records are read, and keeps the lag current: the backlog grows in Kafka."""
        last_lag = time.monotonic()
        while not self._stop.is_set():  # on stop the batch is dropped: uncommitted, so it is replayed
            self._raise_if_failed(failed)
            try:
                jobs.put(batch, timeout=0.1)
                return
            except queue.Full:
                if time.monotonic() - last_lag >= 1.0:
                    self._update_lag(consumer, tp)
                    last_lag = time.monotonic()

    def _write_loop(self, jobs: queue.Queue, handle, sink: WeaviateStore, dlq, failed: list,
                    closing: threading.Event, token: object) -> None:
        """The writer: batches in poll order; an error ends the session, which restarts from the commit."""
        while not closing.is_set():
            try:
                batch = jobs.get(timeout=0.1)
            except queue.Empty:
                continue
            self._writing = True
            try:
                self._finish(batch, handle, sink, dlq)
            except BaseException as exc:  # noqa: BLE001 - handed to the poll thread, which raises it
                failed.append(exc)
                return
            finally:
                self._writing = False
            if self._session_token is token:
                self._acked = batch.records[-1].offset + 1
                self._clear_failure()

    def _freeze_gc(self) -> None:
        """Leave start-up's objects out of every later garbage collection, as Serve does for replicas.

        Imports and clients leave ~190k long-lived objects; the first full collection a few seconds
        into a stream then stalled each consumer for ~180 ms, the worst events of a run.
        """
        if gc.get_freeze_count() == 0:  # once per process: a restarted session must not freeze its garbage
            gc.collect()
            gc.freeze()

    def _update_lag(self, consumer, tp, cached: bool = False) -> None:
        """Log end offset minus committed offset; the whole log counts while nothing is committed.

        `cached`: the end offset the last fetch brought, no broker round trip; while the poll thread
        waits, fetching stops and that value goes stale, so then the broker is asked.
        """
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=5, cached=cached)
            if cached and (high < 0 or (self.committed is None and low < 0)):  # no fetch has brought them yet
                low, high = consumer.get_watermark_offsets(tp, timeout=5)
        except Exception:  # the broker is away: keep the last value
            return
        self.lag = max(high - (self.committed if self.committed is not None else low), 0)
        self.metrics.set_lag(self.lag)

    def _next_batch(self, consumer) -> list[KafkaRecord]:
        """Up to max_batch_records records; waits at most max_batch_wait_ms once the first arrived."""
        from confluent_kafka import KafkaException

        pipeline = self.cfg.pipeline
        first = consumer.poll(POLL_TIMEOUT_S)  # returns as soon as one record is there
        if first is None:
            return []
        messages = [first]
        if pipeline.max_batch_records > 1:
            # consume() returns when it has all it asked for or the wait is over; 0 takes what is queued.
            messages += consumer.consume(pipeline.max_batch_records - 1, pipeline.max_batch_wait_ms / 1000)
        for message in messages:
            if message.error():  # a partition-level error, not a record: start over from the commit
                raise KafkaException(message.error())
        return [KafkaRecord.of(m) for m in messages]

    def _prepare(self, records, handle, dlq) -> _Batch:
        """Poll thread: parse, dead-letter what can never succeed, reuse unchanged vectors, send the rest."""
        pipeline = self.cfg.pipeline
        ops = [parse(r, pipeline.event, pipeline.max_text_bytes) for r in records]
        rejected = [op for op in ops if isinstance(op, Rejected)]
        if rejected:
            self._retry(self._dead_letter, dlq, rejected, wrap=TransientError, target="kafka")

        latest = latest_per_key(op for op in ops if not isinstance(op, Rejected))
        upserts = [op for op in latest if isinstance(op, Upsert)]
        deletes = [op for op in latest if isinstance(op, Delete)]
        # A key whose write is still in flight may miss here and be embedded again: wasted work, never
        # a wrong vector, since the store is keyed by the text's hash.
        batch = _Batch(records, ops, upserts, deletes,
                       {u.key: self._store.vector_if_unchanged(u.key, u.text) for u in upserts})
        if to_embed := batch.to_embed:
            with contextlib.suppress(Exception):  # Serve away: the writer's retries send it again
                batch.response = handle.embed.remote([u.text for u in to_embed])
            batch.started = time.perf_counter()
        return batch

    def _finish(self, batch: _Batch, handle, sink: WeaviateStore, dlq) -> None:
        """Writer thread: wait for the vectors, write, then count and remember what Weaviate confirmed.

        A record that a service refuses for what it is (not for being away) is isolated from its batch
        and dead-lettered with the step and the error; the rest of the batch lands.
        """
        to_embed = batch.to_embed
        fresh, refused = self._embed_isolating(handle, to_embed, batch.response, batch.started) if to_embed else ({}, {})
        t1 = time.perf_counter()
        items = [Embedded(u, batch.cached[u.key] if batch.cached[u.key] is not None else fresh[u.key])
                 for u in batch.upserts if u.key not in refused]
        written, rejected = self._write_isolating(sink, items, batch.deletes)
        self.metrics.stage("upsert", len(items) + len(batch.deletes), time.perf_counter() - t1)

        by_offset = {r.offset: r for r in batch.records}
        dead = [Rejected.of(by_offset[u.source.offset], "embed_failed", detail, "embed")
                for u in to_embed if (detail := refused.get(u.key))]
        dead += [Rejected.of(by_offset[e.op.source.offset], "write_rejected", detail, "write")
                 for e, detail in rejected]
        if dead and self._stop.is_set():  # tries cut short: not acknowledged, the next run judges again
            raise TransientError(f"stopping with {len(dead)} refused records not yet dead-lettered")
        if dead:
            self._retry(self._dead_letter, dlq, dead, wrap=TransientError, target="kafka")

        ack_ms = time.time() * 1000
        failed_offsets = {d.source.offset for d in dead}
        latencies = [ack_ms - r.timestamp for r, op in zip(batch.records, batch.ops)
                     if not isinstance(op, Rejected) and r.offset not in failed_offsets]
        self.freshness.add(latencies)
        self._recent.extend(latencies)
        self.metrics.observe_freshness(latencies)
        for item in written:
            self._store.remember(item.op.key, item.op.text, item.vector)
        for d in batch.deletes:
            self._store.forget(d.key)
        counts = {"consumed": len(batch.records), "upserted": len(written), "deleted": len(batch.deletes),
                  "embedded": len(to_embed) - len(refused), "skipped_unchanged": len(batch.upserts) - len(to_embed)}
        for outcome, n in counts.items():
            self.counters[outcome] += n
            self.metrics.count(outcome, n)
        self.counters["batches"] += 1

    def _attempts(self, fn, *args, target: str):
        """`_retry` (transient errors without limit), plus `pipeline.poison_attempts` tries of a
        RecordRejected, with back-off: a refusal that repeats is the record's doing."""
        for attempt in range(1, self.cfg.pipeline.poison_attempts + 1):
            try:
                return self._retry(fn, *args, target=target)
            except RecordRejected as exc:
                if attempt == self.cfg.pipeline.poison_attempts or self._stop.is_set():
                    raise
                self._note_failure(exc)
                self.metrics.retry(target)
                self._stop.wait(min(0.1 * 2 ** attempt, self.cfg.pipeline.retry_max_backoff_s))

    def _embed_isolating(self, handle, upserts: list[Upsert], response, started: float):
        """(vectors by key, error by refused key). A refused batch is split in halves until each refused
        text is alone; a lone refused text is poison only if the embedder then embeds PROBE_TEXT, so
        an embedder that refuses everything is retried as unavailable, never dead-letters a stream."""
        sent = [response] if response is not None else []

        def embed(group) -> np.ndarray:  # the call sent at poll time first, a new one after
            texts = [u.text for u in group]
            if group is upserts:  # the whole batch: a refusal is tried again a few times first
                return self._attempts(lambda: self._embed(handle, texts, sent.pop() if sent else None),
                                      target="serve")
            return self._retry(self._embed, handle, texts, target="serve")

        done, refused = split_refused(upserts, embed, EmbedRejected)
        if refused:
            self._retry(self._probe, handle, target="serve")
        self.metrics.stage("embed", len(upserts), time.perf_counter() - started)
        vectors = {u.key: v for group, out in done for u, v in zip(group, out)}
        return vectors, {u.key: str(exc) for u, exc in refused}

    def _probe(self, handle) -> None:
        try:
            self._embed(handle, [PROBE_TEXT])
        except EmbedRejected as exc:
            raise EmbedError(f"the embedder refuses even a plain text: {exc}") from exc

    def _write_isolating(self, sink: WeaviateStore, items: list[Embedded], deletes: list[Delete]):
        """(items written, [(item, error)] that Weaviate refuses). Weaviate names the objects of a batch
        it refused (the others are written); each is written alone again, `poison_attempts` tries in
        all, and dead-lettered with its own error when it is refused every time."""
        try:
            self._retry(sink.write, items, deletes, False, target="weaviate")
            return items, []
        except WriteRejected as exc:
            refusal, pending = exc, dict(exc.errors)
        for attempt in range(2, self.cfg.pipeline.poison_attempts + 1):
            if self._stop.is_set():
                break
            self._note_failure(refusal)
            self.metrics.retry("weaviate")
            self._stop.wait(min(0.1 * 2 ** attempt, self.cfg.pipeline.retry_max_backoff_s))
            for i in list(pending):
                try:
                    self._retry(sink.write, [items[i]], [], True, target="weaviate")
                    del pending[i]
                except WriteRejected as alone:
                    pending[i] = alone.errors[0]
            if not pending:
                break
        if deletes:  # the refused write came first: the batch's deletes are still to do
            self._retry(sink.write, [], deletes, target="weaviate")
        return [item for i, item in enumerate(items) if i not in pending], [(items[i], m) for i, m in pending.items()]

    def _embed(self, handle, texts: list[str], response=None) -> np.ndarray:
        """The vectors for `texts`, from `response` when the call was already sent."""
        try:
            vectors = (response if response is not None else handle.embed.remote(texts)).result(timeout_s=30)
        except Exception as exc:
            if is_refusal(exc):  # the replica's own code raised: these texts (or the model) are refused
                cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else exc
                raise EmbedRejected(f"the embedder refused {len(texts)} texts: {type(cause).__name__}: "
                                    f"{str(cause)[:300]}") from exc
            raise EmbedError(f"embedding {len(texts)} texts failed: {type(exc).__name__}: {exc}") from exc
        if vectors.shape != (len(texts), self.model.dim):
            raise EmbedError(f"embedder returned shape {vectors.shape}, expected ({len(texts)}, {self.model.dim})")
        return vectors

    def _dead_letter(self, dlq, rejected: list[Rejected]) -> None:
        from confluent_kafka import KafkaError, KafkaException

        failed: list = []

        def delivered(err, _message) -> None:
            if err is not None:
                failed.append(err)

        for r in rejected:
            headers = [("reason", r.reason.encode()), ("step", r.step.encode()),
                       ("detail", r.detail.encode("utf-8", "backslashreplace")[:1000]),
                       ("source.topic", r.source.topic.encode()),
                       ("source.partition", str(r.source.partition).encode()),
                       ("source.offset", str(r.source.offset).encode())]
            try:
                dlq.produce(self.cfg.pipeline.dlq_topic, key=r.key, value=r.value, headers=headers,
                            on_delivery=delivered)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.MSG_SIZE_TOO_LARGE:
                    raise
                # Too big for the DLQ: keep the reason and where to find the original.
                headers.append(("value.truncated_from", str(len(r.value or b"")).encode()))
                dlq.produce(self.cfg.pipeline.dlq_topic, key=r.key, value=(r.value or b"")[:65536],
                            headers=headers, on_delivery=delivered)
        unsent = dlq.flush(30)
        if unsent or failed:
            raise TransientError(f"writing {len(rejected)} records to the DLQ failed: "
                                 f"{failed[0] if failed else f'{unsent} not delivered in 30 s'}")
        self.counters["dead_lettered"] += len(rejected)
        for r in rejected:
            self.metrics.dead_letter(r.reason)
            log.warning("%s offset %d -> DLQ at %s: %s (%s)", r.source.topic, r.source.offset, r.step, r.reason,
                        r.detail)

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
            # Keep lag current while paused (the backlog grows in Kafka); the Kafka client is the poll thread's.
            if self._position is not None and threading.current_thread() is self._thread:
                self._update_lag(*self._position)
            self.counters["retries"] += 1
            self.metrics.retry(target)
            self._note_failure(retry_state.outcome.exception())
            self.state = "retrying"
            log.warning("%s: %s; retrying", self.name, retry_state.outcome.exception())

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

    def _note_failure(self, exc: BaseException) -> None:
        """Remember what the partition is stuck on, for `freshvec status` and the stuck metric."""
        offset = self._acked if self._acked is not None else self.committed
        error = f"{type(exc).__name__}: {exc}"[:500]
        if self.stuck is None or self.stuck["offset"] != offset:
            self.stuck = {"offset": offset, "error": error, "attempts": 1, "since": time.time()}
        else:
            self.stuck.update(error=error, attempts=self.stuck["attempts"] + 1)
        self.metrics.set_stuck(time.time() - self.stuck["since"])

    def _clear_failure(self) -> None:
        if self.stuck is not None:
            self.stuck = None
            self.metrics.set_stuck(0.0)

    def _log_freshness(self) -> None:
        p = self.freshness.percentiles()
        if p["p50_ms"] is not None:
            log.info("%s freshness p50 %.1f ms p99 %.1f ms over %d records in the last 60 s",
                     self.name, p["p50_ms"], p["p99_ms"], len(self.freshness))
