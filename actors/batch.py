"""What happens to one polled batch, in two halves for the two stages of a session.

`prepare` (reader thread) parses the records, dead-letters what can never succeed, reuses the vector
of each text that did not change and sends the rest to the embedder. `finish` (writer thread) waits
for the vectors, writes to Weaviate and dead-letters what a service refused for what it is, isolated
from its batch-mates, so the rest of the batch lands; it returns the offset that may be committed.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from freshvec.actors.dead_letters import DeadLetterWriter
from freshvec.actors.isolation import split_refused
from freshvec.actors.progress import Progress
from freshvec.actors.retries import RetryPolicy
from freshvec.actors.state import ContentStore
from freshvec.core.config import PipelineConfig
from freshvec.core.errors import EmbedError, EmbedRejected, TransientError, WriteRejected
from freshvec.core.identity import ModelInfo
from freshvec.core.records import Delete, KafkaRecord, Rejected, Upsert, latest_per_key, parse
from freshvec.core.store import Embedded, WeaviateStore

log = logging.getLogger("freshvec.consumer")

# Embedded when the embedder refuses a lone text: if this passes, the embedder works and the text is poison.
PROBE_TEXT = "freshvec probe: the embedder answers"
EMBED_TIMEOUT_S = 30


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


@dataclass
class Batch:
    """A polled batch between the two stages: parsed, dead letters sent, its embedding under way."""

    records: list[KafkaRecord]
    ops: list
    upserts: list[Upsert]
    deletes: list[Delete]
    cached: dict[str, np.ndarray | None]  # the stored vector of each upsert whose text is unchanged
    response: object | None = None  # the embed call's DeploymentResponse; None when nothing (yet) is sent
    started: float = 0.0  # perf_counter when the embedding was sent

    @property
    def to_embed(self) -> list[Upsert]:
        return [u for u in self.upserts if self.cached[u.key] is None]


class BatchProcessor:
    def __init__(self, pipeline: PipelineConfig, model: ModelInfo, embedder, store: WeaviateStore,
                 dead_letters: DeadLetterWriter, retries: RetryPolicy, vectors: ContentStore, progress: Progress,
                 stopped: threading.Event):
        """`embedder`: the Serve deployment handle; `vectors`: what was last written per key."""
        self.pipeline, self.model, self.embedder, self.store = pipeline, model, embedder, store
        self.dead_letters, self.retries, self.vectors, self.progress = dead_letters, retries, vectors, progress
        self.metrics, self.stopped = progress.metrics, stopped

    def warm_up(self) -> None:
        """The first handle call and the first Weaviate call set up routers and connections (seconds on
        a busy box); done before the first record, so that no event waits for them."""
        self.retries.call(self._probe, target="serve")
        self.retries.call(self.store.open, target="weaviate")
        self.retries.call(self.store.ping, target="weaviate")

    # --- reader thread ------------------------------------------------------------
    def prepare(self, records: list[KafkaRecord]) -> Batch:
        ops = [parse(r, self.pipeline.event, self.pipeline.max_text_bytes) for r in records]
        rejected = [op for op in ops if isinstance(op, Rejected)]
        if rejected:
            self.retries.call(self.dead_letter, rejected, target="kafka")

        latest = latest_per_key(op for op in ops if not isinstance(op, Rejected))
        upserts = [op for op in latest if isinstance(op, Upsert)]
        deletes = [op for op in latest if isinstance(op, Delete)]
        # A key whose write is still in flight may miss here and be embedded again: wasted work, never
        # a wrong vector, since the store is keyed by the text's hash.
        batch = Batch(records, ops, upserts, deletes,
                      {u.key: self.vectors.vector_if_unchanged(u.key, u.text) for u in upserts})
        if to_embed := batch.to_embed:
            with contextlib.suppress(Exception):  # Serve away: the writer's retries send it again
                batch.response = self.embedder.embed.remote([u.text for u in to_embed])
            batch.started = time.perf_counter()
        return batch

    # --- writer thread ------------------------------------------------------------
    def finish(self, batch: Batch) -> int:
        """Wait for the vectors, write, dead-letter what was refused, count; returns the offset after the batch."""
        to_embed = batch.to_embed
        fresh, refused = self._embed_isolating(to_embed, batch.response, batch.started) if to_embed else ({}, {})
        t1 = time.perf_counter()
        items = [Embedded(u, batch.cached[u.key] if batch.cached[u.key] is not None else fresh[u.key])
                 for u in batch.upserts if u.key not in refused]
        written, rejected = self._write_isolating(items, batch.deletes)
        self.metrics.stage("upsert", len(items) + len(batch.deletes), time.perf_counter() - t1)

        by_offset = {r.offset: r for r in batch.records}
        dead = [Rejected.of(by_offset[u.source.offset], "embed_failed", detail, "embed")
                for u in to_embed if (detail := refused.get(u.key))]
        dead += [Rejected.of(by_offset[e.op.source.offset], "write_rejected", detail, "write")
                 for e, detail in rejected]
        if dead and self.stopped.is_set():  # tries cut short: not acknowledged, the next run judges again
            raise TransientError(f"stopping with {len(dead)} refused records not yet dead-lettered")
        if dead:
            self.retries.call(self.dead_letter, dead, target="kafka")

        ack_ms = time.time() * 1000
        failed_offsets = {d.source.offset for d in dead}
        self.progress.acknowledged([ack_ms - r.timestamp for r, op in zip(batch.records, batch.ops)
                                    if not isinstance(op, Rejected) and r.offset not in failed_offsets])
        for item in written:
            self.vectors.remember(item.op.key, item.op.text, item.vector)
        for d in batch.deletes:
            self.vectors.forget(d.key)
        self.progress.count(consumed=len(batch.records), upserted=len(written), deleted=len(batch.deletes),
                            embedded=len(to_embed) - len(refused),
                            skipped_unchanged=len(batch.upserts) - len(to_embed), batches=1)
        return batch.records[-1].offset + 1

    def dead_letter(self, rejected: list[Rejected]) -> None:
        self.dead_letters.send(rejected)
        self.progress.count(dead_lettered=len(rejected))
        for r in rejected:
            self.metrics.dead_letter(r.reason)
            log.warning("%s offset %d -> DLQ at %s: %s (%s)", r.source.topic, r.source.offset, r.step, r.reason,
                        r.detail)

    def _embed_isolating(self, upserts: list[Upsert], response, started: float):
        """(vectors by key, error by refused key). A refused batch is split in halves until each refused
        text is alone; a lone refused text is poison only if the embedder then embeds PROBE_TEXT, so
        an embedder that refuses everything is retried as unavailable, never dead-letters a stream."""
        sent = [response] if response is not None else []

        def embed(group) -> np.ndarray:  # the call sent at poll time first, a new one after
            texts = [u.text for u in group]
            if group is upserts:  # the whole batch: a refusal is tried again a few times first
                return self.retries.attempts(lambda: self._embed(texts, sent.pop() if sent else None),
                                             target="serve")
            return self.retries.call(self._embed, texts, target="serve")

        done, refused = split_refused(upserts, embed, EmbedRejected)
        if refused:
            self.retries.call(self._probe, target="serve")
        self.metrics.stage("embed", len(upserts), time.perf_counter() - started)
        vectors = {u.key: v for group, out in done for u, v in zip(group, out)}
        return vectors, {u.key: str(exc) for u, exc in refused}

    def _probe(self) -> None:
        try:
            self._embed([PROBE_TEXT])
        except EmbedRejected as exc:
            raise EmbedError(f"the embedder refuses even a plain text: {exc}") from exc

    def _write_isolating(self, items: list[Embedded], deletes: list[Delete]):
        """(items written, [(item, error)] that Weaviate refuses). Weaviate names the objects of a batch
        it refused (the others are written); each is written alone again, `poison_attempts` tries in
        all, and dead-lettered with its own error when it is refused every time."""
        try:
            self.retries.call(self.store.write, items, deletes, False, target="weaviate")
            return items, []
        except WriteRejected as exc:
            refusal, pending = exc, dict(exc.errors)
        for attempt in range(2, self.pipeline.poison_attempts + 1):
            if self.stopped.is_set():
                break
            self.retries.on_retry(refusal, "weaviate")
            self.retries.pause(attempt)
            for i in list(pending):
                try:
                    self.retries.call(self.store.write, [items[i]], [], True, target="weaviate")
                    del pending[i]
                except WriteRejected as alone:
                    pending[i] = alone.errors[0]
            if not pending:
                break
        if deletes:  # the refused write came first: the batch's deletes are still to do
            self.retries.call(self.store.write, [], deletes, target="weaviate")
        return [item for i, item in enumerate(items) if i not in pending], [(items[i], m) for i, m in pending.items()]

    def _embed(self, texts: list[str], response=None) -> np.ndarray:
        """The vectors for `texts`, from `response` when the call was already sent."""
        try:
            vectors = (response if response is not None else self.embedder.embed.remote(texts)).result(
                timeout_s=EMBED_TIMEOUT_S)
        except Exception as exc:
            if is_refusal(exc):  # the replica's own code raised: these texts (or the model) are refused
                cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else exc
                raise EmbedRejected(f"the embedder refused {len(texts)} texts: {type(cause).__name__}: "
                                    f"{str(cause)[:300]}") from exc
            raise EmbedError(f"embedding {len(texts)} texts failed: {type(exc).__name__}: {exc}") from exc
        if vectors.shape != (len(texts), self.model.dim):
            raise EmbedError(f"embedder returned shape {vectors.shape}, expected ({len(texts)}, {self.model.dim})")
        return vectors
