"""One Ray actor per Kafka partition: poll, embed through Serve, upsert into Weaviate, commit.

The actor is the Ray-facing shell over parts that each do one thing: the partition's Kafka I/O
(partition.py), the batch steps (batch.py), the two-stage session (session.py), the dead-letter
writer (dead_letters.py), the retry policy (retries.py) and what it reports (progress.py).

The loop runs in a thread started by the constructor, so when Ray restarts a dead actor the new
instance resumes on its own from the group's committed offset. An offset is committed only after
Weaviate confirmed every object up to it (and the DLQ every rejected record), so a crash anywhere
replays, and idempotent writes make a replay harmless: no loss, no duplicates. A batch's embedding
overlaps the previous batch's write; batches are written in poll order, so per-key order holds.
Batches adapt to the load (session.Gatherer): a trickle travels alone, and under load the calls to
the embedder and Weaviate grow instead of queueing one record at a time.

A consumer embeds with one index generation (core/generation.py): a model, the Serve application
that runs it, and the physical collection it writes. `freshvec reindex` runs a second set of consumers
of the next generation (role "shadow": their own consumer group, no dead letters, no backlog reports)
and, at its switch, pauses the live ones and resumes them on the next generation from where the shadow
stands (`pause`, `resume`).

A session that fails on a retriable error, or on one nobody foresaw, starts over from the committed
offset; one that meets an error no retry can fix (a FreshvecError that is not retriable: refused
credentials, a consumer setting librdkafka rejects) stops in state `failed` with the reason.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import threading
import time

import ray

from freshvec.actors.batch import BatchProcessor
from freshvec.actors.chunker import Chunker
from freshvec.actors.dead_letters import DeadLetterWriter, Discarded
from freshvec.actors.metrics import PipelineMetrics
from freshvec.actors.partition import PartitionReader
from freshvec.actors.progress import ConsumerStats, Progress
from freshvec.actors.prunes import PendingPrunes
from freshvec.actors.retries import RetryPolicy
from freshvec.actors.session import Gatherer, TwoStageSession
from freshvec.actors.state import ContentStore
from freshvec.core.config import FreshvecConfig
from freshvec.core.errors import FreshvecError
from freshvec.core import generation as generations
from freshvec.core.generation import Generation
from freshvec.core.identity import BACKLOG_PREFIX, DEPLOYMENT_NAME, KV_NAMESPACE, consumer_name, shadow_name
from freshvec.core.store import WeaviateStore

log = logging.getLogger("freshvec.consumer")

LAG_INTERVAL_S = 1.0
# A Kafka call of the group coordinator (read or commit the offset) retried in place this long, then
# the session starts over with a new client: librdkafka's consumer, partitions assigned rather than
# subscribed, can stay "waiting for coordinator" after the broker restarts (one partition of a chaos
# run never committed again), while a new client finds the coordinator at once.
COORDINATOR_RETRY_S = 5.0
# A paused consumer resumes by itself after this long: a `freshvec reindex` that died half-way through
# its switch must not leave the live pipeline stopped. It then takes the published generation.
PAUSE_LEASE_S = 60.0


def _rss_mb() -> float:
    """Resident memory of this process, for the backpressure bound (see README)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _freeze_gc() -> None:
    """Leave start-up's objects out of every later garbage collection, as Serve does for replicas:
    imports and clients leave ~190k long-lived objects, and the first full collection then stalled
    each consumer for ~180 ms. Once per process: a restarted session must not freeze its garbage."""
    if gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()


class PartitionConsumer:
    """Consumes exactly one partition; see the module docstring for the guarantees."""

    def __init__(self, cfg: FreshvecConfig, topic: str, partition: int, generation: Generation,
                 region: str = "local", zone_label_key: str = "zone", zone_racks: dict[str, str] | None = None,
                 role: str = "live"):
        """role "live" takes a newer published generation than `generation` (Ray restarted it after a
        switch); "shadow" keeps `generation` (cfg.kafka.group_id must then be the shadow's group)."""
        self.cfg, self.topic, self.partition, self.region, self.role = cfg, topic, partition, region, role
        if role == "live" and (published := generations.current(cfg.weaviate.collection)) and published.version >= generation.version:
            generation = published
        self.generation = generation
        self.name = (consumer_name if role == "live" else shadow_name)(region, topic, partition)
        # The zone of the node Ray put us on decides client_rack: fetch from the nearest replica.
        zone = ray.get_runtime_context().get_node_labels().get(zone_label_key)
        self.client_rack = (zone_racks or {}).get(zone)
        self.progress = Progress(PipelineMetrics(region if role == "live" else f"{region}/{role}", topic, partition))
        self._chunker = Chunker(cfg.pipeline.chunking, generation.model.model)
        self._vectors, self._vectors_model = ContentStore(cfg.pipeline.state_max_chunks), generation.model
        self._prunes, self._prunes_generation = self._new_prunes(), generation
        self._stop = threading.Event()
        # pause/resume: the session ends while `_paused` is set; `_resume_at` is where the next starts.
        self._paused = threading.Event()
        self._resumed = threading.Event()
        self._resume_at: int | None = None
        # Each session has its own stop, set when it ends (and by `stop`), so that a writer still
        # retrying in a session that failed gives up instead of writing a stale batch later.
        self._session_stop = threading.Event()
        self._reader: PartitionReader | None = None  # the current session's, for lag while retrying
        self._session: TwoStageSession | None = None
        self._lag_asked = 0.0  # when the lag was last asked of the broker while the writer was busy
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    # --- called by the supervisor, `freshvec status`, tests and benchmarks --------
    def stats(self) -> ConsumerStats:
        ctx = ray.get_runtime_context()
        reader = self._reader
        return self.progress.snapshot(name=self.name, topic=self.topic, partition=self.partition, region=self.region,
                                      node_id=ctx.get_node_id(), labels=ctx.get_node_labels(), pid=os.getpid(),
                                      rss_mb=_rss_mb(), position=reader.position if reader is not None else None)

    def drain_latencies(self) -> list[float]:
        """Event -> acknowledgement latencies (ms) recorded since the last call."""
        return self.progress.drain_latencies()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._session_stop.set()
        self._resumed.set()
        self._thread.join(timeout_s)

    def pause(self, timeout_s: float = 30.0) -> int | None:
        """End the session (its batch finished and committed) and read nothing until `resume`, or for
        PAUSE_LEASE_S at most; returns the committed offset."""
        self._resumed.clear()
        self._paused.set()
        self._session_stop.set()
        deadline = time.monotonic() + timeout_s
        while self.progress.state != "paused" and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.01)
        if self.progress.state != "paused" and self._thread.is_alive():  # a failed one reads nothing either
            raise TimeoutError(f"{self.name} did not pause in {timeout_s:.0f} s (state {self.progress.state})")
        return self.progress.committed

    def resume(self, generation: Generation, offset: int | None = None) -> None:
        """Go on with `generation`, from `offset` when given (committed first), else from the committed one."""
        self.generation, self._resume_at = generation, offset
        if not self._paused.is_set():  # running (Ray restarted it meanwhile): start over on `generation`
            self._session_stop.set()
        self._resumed.set()

    # --- the loop -----------------------------------------------------------------
    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            if self._paused.is_set():
                self._wait_paused()
                continue
            ran = threading.Event()  # set once the session reads records: then a fault starts the back-off anew
            try:
                self._run_session(ran)
            except FreshvecError as exc:
                failures = 0 if ran.is_set() else failures
                if exc.retriable or self._stop.is_set():
                    failures = self._restart_after(exc, failures)
                    continue
                log.error("%s: failed, not retrying: %s", self.name, exc)
                self.progress.fail(exc)
                return
            except Exception as exc:  # unforeseen: start over from the committed offset
                failures = 0 if ran.is_set() else failures
                failures = self._restart_after(exc, failures, trace=True)

    def _wait_paused(self) -> None:
        self.progress.state = "paused"
        if not self._resumed.wait(PAUSE_LEASE_S):
            log.warning("%s: not resumed within %.0f s; going on with the published generation", self.name,
                        PAUSE_LEASE_S)
            if self.role == "live" and (published := generations.current(self.cfg.weaviate.collection)) is not None:
                self.generation = published
        self._paused.clear()
        self.progress.state = "starting"

    def _restart_after(self, exc: BaseException, failures: int, trace: bool = False) -> int:
        if not self._stop.is_set() and not self._paused.is_set():  # not a session ended on purpose
            log.warning("%s: restarting from the committed offset after %s: %s", self.name, type(exc).__name__, exc,
                        exc_info=trace)
            self.progress.note_failure(exc, self._offset())
            self.progress.state = "recovering"
            back_off = time.monotonic() + min(2 ** failures, 30)  # 1 s, 2 s, ... for a fault that keeps coming back
            while time.monotonic() < back_off and not self._paused.is_set() and not self._stop.wait(0.1):
                pass
        return failures + 1

    def _run_session(self, ran: threading.Event) -> None:
        from ray import serve

        pipeline = self.cfg.pipeline
        self._session_stop = stopped = threading.Event()
        if self._stop.is_set() or self._paused.is_set():
            stopped.set()
        retries = RetryPolicy(stopped, pipeline.retry_max_backoff_s, pipeline.poison_attempts,
                              on_retry=self._on_retry, on_recovered=self.progress.recovered)
        reader = dead_letters = store = session = None
        generation = self._take_generation()
        try:
            self._reader = reader = PartitionReader(self.cfg.kafka, self.topic, self.partition, self.client_rack)
            # A shadow replays what the live consumers already dead-lettered: not again.
            dead_letters = DeadLetterWriter(self.cfg.kafka, pipeline.dlq_topic) if self.role == "live" else Discarded()
            collection = generation.collection(self.cfg.weaviate.collection)
            store = WeaviateStore(self.cfg.weaviate.model_copy(update={"collection": collection}), generation.model)
            embedder = serve.get_deployment_handle(DEPLOYMENT_NAME, app_name=generation.app)
            steps = BatchProcessor(pipeline, generation.model, self._chunker, embedder, store, dead_letters, retries,
                                   self._vectors, self._prunes, self.progress, stopped)
            self.progress.state = "warming up"
            steps.warm_up()
            if self._resume_at is not None:  # where `resume` said: the shadow's position at a switch
                retries.call(reader.commit, self._resume_at, target="kafka", within_s=COORDINATOR_RETRY_S)
                self._resume_at = None
            self.progress.committed = retries.call(reader.start, target="kafka", within_s=COORDINATOR_RETRY_S)
            _freeze_gc()
            self._session = session = TwoStageSession(lambda batch: self._finish(steps, batch), self.name,
                                                      idle=steps.settle)
            session.start()
            self.progress.state = "running"
            ran.set()
            self._poll(reader, steps, session, retries)
        finally:
            stopped.set()
            if session is not None:
                session.close()
                self._commit_on_stop(reader, session.acked)
            self._reader = self._session = None
            if self._paused.is_set():
                self.progress.state = "paused"
            elif self._stop.is_set() and self.progress.state != "failed":
                self.progress.state = "stopped"
            for part in (reader, dead_letters, store):
                if part is not None:
                    part.close()

    def _poll(self, reader: PartitionReader, steps: BatchProcessor, session: TwoStageSession,
              retries: RetryPolicy) -> None:
        """The reader stage: poll, prepare, hand over; commit what the writer acknowledged; keep lag current."""
        pipeline = self.cfg.pipeline
        last_log = last_lag = last_commit = 0.0
        gather = Gatherer(session, pipeline.max_batch_records, pipeline.max_batch_wait_ms)
        stopped = self._session_stop
        while not stopped.is_set():
            session.raise_if_failed()
            if batch := gather.step(reader.next_batch):
                session.hand_over(steps.prepare(batch), stopped, waiting=self._lag_every_second)
            elif gather.full:
                # A full batch waits while the writer is busy (Weaviate slow or away): no more records
                # are read, the backlog grows in Kafka, and the lag the broker reports stays current.
                self._lag_every_second()
            elif self.progress.stuck is not None and session.idle:
                self.progress.clear_failure()  # quiet, and nothing failing in flight
            acked = session.acked
            if acked is not None and acked != self.progress.committed and (
                    gather.quiet or time.monotonic() - last_commit >= pipeline.commit_interval_ms / 1000):
                retries.call(reader.commit, acked, target="kafka", within_s=COORDINATOR_RETRY_S)
                self.progress.committed, last_commit = acked, time.monotonic()
            if time.monotonic() - last_lag >= LAG_INTERVAL_S:
                # Cached (no broker round trip) while records flow; a full gather reads nothing, so
                # the cached end offset is stale then and the broker is asked.
                self.progress.set_lag(reader.lag(self.progress.committed, cached=not gather.full))
                self._report_backlog(reader)
                last_lag = time.monotonic()
            if time.monotonic() - last_log >= pipeline.freshness_log_interval_s:
                self._log_freshness()
                last_log = time.monotonic()

    def _finish(self, steps: BatchProcessor, batch) -> int | None:
        offset = steps.finish(batch)
        self.progress.clear_failure()
        self.progress.recovered()
        return offset

    def _commit_on_stop(self, reader: PartitionReader | None, acked: int | None) -> None:
        """Best effort: what the writer finished is committed; a replay of it would be harmless anyway."""
        deliberate = self._stop.is_set() or self._paused.is_set()
        if reader is not None and deliberate and acked is not None and acked != self.progress.committed:
            try:
                reader.commit(acked)
                self.progress.committed = acked
            except FreshvecError:
                pass

    def _offset(self) -> int | None:
        """Where the partition stands: after the last acknowledged batch, else the committed offset."""
        session = self._session
        acked = session.acked if session is not None else None
        return acked if acked is not None else self.progress.committed

    def _take_generation(self) -> Generation:
        """The generation for the next session; a new model gets its own tokenizer for chunking and
        an empty content store (its vectors are the old model's)."""
        generation = self.generation
        if generation.model.model != self._chunker.model:
            self._chunker = Chunker(self.cfg.pipeline.chunking, generation.model.model)
        if generation.model != self._vectors_model:
            self._vectors = ContentStore(self.cfg.pipeline.state_max_chunks)
            self._vectors_model = generation.model
        if generation != self._prunes_generation:  # the deletes that waited were for the old collection
            self._prunes, self._prunes_generation = self._new_prunes(), generation
        return generation

    def _new_prunes(self) -> PendingPrunes:
        # As long as the committed offset may trail anyway: the deferred deletes hold it back.
        return PendingPrunes(self.cfg.pipeline.commit_interval_ms / 1000)

    def _lag_every_second(self) -> None:
        if time.monotonic() - self._lag_asked >= LAG_INTERVAL_S and self._reader is not None:
            self.progress.set_lag(self._reader.lag(self.progress.committed))
            self._lag_asked = time.monotonic()

    def _report_backlog(self, reader: PartitionReader) -> None:
        """For the backlog autoscaling policy (serve/autoscaling.py): this partition's lag and end offset.
        Always, once a second: the policy may be set by a Serve config this consumer does not see."""
        if self.role != "live" or self.progress.lag is None or reader.end_offset is None:
            return
        from ray.experimental.internal_kv import _internal_kv_put

        report = {"lag": self.progress.lag, "end": reader.end_offset, "at": time.time()}
        try:
            _internal_kv_put(BACKLOG_PREFIX + self.name, json.dumps(report), namespace=KV_NAMESPACE)
        except Exception:  # the policy falls back to requests when reports stop; ingestion goes on
            log.debug("%s: could not report the backlog", self.name, exc_info=True)

    def _on_retry(self, exc: BaseException, target: str) -> None:
        # Keep lag current while paused (the backlog grows in Kafka); the Kafka client is the poll thread's.
        if self._reader is not None and threading.current_thread() is self._thread:
            self.progress.set_lag(self._reader.lag(self.progress.committed))
        self.progress.retrying(exc, target, self._offset())
        log.warning("%s: %s; retrying", self.name, exc)

    def _log_freshness(self) -> None:
        p = self.progress.freshness.percentiles()
        if p["p50_ms"] is not None:
            log.info("%s freshness p50 %.1f ms p99 %.1f ms over %d records in the last 60 s",
                     self.name, p["p50_ms"], p["p99_ms"], len(self.progress.freshness))
