"""What happens to one polled batch, in two halves for the two stages of a session.

`prepare` (reader thread) parses the records, splits each document into chunks, dead-letters what can
never succeed, reuses the vector of each chunk whose text did not change and sends the rest to the
embedder. `finish` (writer thread) waits for the vectors, writes each document's chunks to Weaviate
(removing what a longer earlier version left) and dead-letters what a service refused for what it
is, isolated from its batch-mates, so the rest of the batch lands; it returns the offset that may be
committed. A document is the unit of refusal: one refused chunk sends the whole document to the DLQ.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from freshvec.actors.chunker import Chunker
from freshvec.actors.dead_letters import DeadLetterWriter
from freshvec.actors.isolation import split_refused
from freshvec.actors.progress import Progress
from freshvec.actors.prunes import PendingPrunes
from freshvec.actors.retries import RetryPolicy
from freshvec.actors.state import ContentStore
from freshvec.core.config import PipelineConfig
from freshvec.core.errors import EmbedError, EmbedRejected, TransientError, WriteRejected
from freshvec.core.identity import ModelInfo
from freshvec.core.records import Chunk, Delete, KafkaRecord, Rejected, Upsert, latest_per_key, parse
from freshvec.core.store import Embedded, WeaviateStore

log = logging.getLogger("freshvec.consumer")

# Embedded when the embedder refuses a lone text: if this passes, the embedder works and the text is poison.
PROBE_TEXT = "freshvec probe: the embedder answers"
# How long the embed calls of a batch may take before they count as lost (and are cancelled and sent
# again): a dead replica fails its calls at once, so this only catches a hung one. It grows with the
# texts: a batch of long documents is hundreds of 256-token chunks, queued behind other consumers'
# calls, at under 10 chunks/s per slow single-threaded replica; a fixed 30 s made such batches time
# out, and each retry sent the same work again while the first calls still ran (20 % of the floor).
EMBED_TIMEOUT_S = 30
EMBED_TIMEOUT_S_PER_TEXT = 1.0
# A wait for the embedder is cut into waits this long, so that a stopped session does not wait it out.
RESULT_WAIT_S = 0.5
# Texts per embed call: the chunks of a batch spread over the replicas when there are several.
EMBED_CALL_TEXTS = 128


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
class Document:
    """An upsert split into chunks, with the vector last written for each chunk whose text is unchanged."""

    op: Upsert
    chunks: list[Chunk]
    cached: list[np.ndarray | None]

    @property
    def missing(self) -> list[str]:
        """The texts of the chunks to embed."""
        return [c.text for c, v in zip(self.chunks, self.cached) if v is None]

    def with_vectors(self, fresh: np.ndarray | list) -> list[np.ndarray]:
        """Every chunk's vector: the cached ones, and `fresh` (for `missing`, in order) in the gaps."""
        new = iter(fresh)
        return [v if v is not None else next(new) for v in self.cached]


@dataclass
class Batch:
    """A polled batch between the two stages: parsed, chunked, dead letters sent, its embedding under way."""

    records: list[KafkaRecord]
    ops: list
    docs: list[Document]
    deletes: list[Delete]
    responses: list | None = None  # the embed calls' DeploymentResponses; None when nothing (yet) is sent
    started: float = 0.0  # perf_counter when the embedding was sent

    @property
    def to_embed(self) -> list[Document]:
        return [d for d in self.docs if d.missing]


class BatchProcessor:
    def __init__(self, pipeline: PipelineConfig, model: ModelInfo, chunker: Chunker, embedder, store: WeaviateStore,
                 dead_letters: DeadLetterWriter, retries: RetryPolicy, vectors: ContentStore, prunes: PendingPrunes,
                 progress: Progress, stopped: threading.Event):
        """`embedder`: the Serve deployment handle; `vectors`: what was last written per key; `prunes`:
        the deletes of stale chunks that wait (both outlive a session)."""
        self.pipeline, self.model, self.chunker, self.embedder, self.store = pipeline, model, chunker, embedder, store
        self.dead_letters, self.retries, self.vectors, self.progress = dead_letters, retries, vectors, progress
        self.prunes, self.metrics, self.stopped = prunes, progress.metrics, stopped
        self._written_to: int | None = None  # the offset after the last batch this session wrote

    def warm_up(self) -> None:
        """The first handle call and the first Weaviate call set up routers and connections (seconds on
        a busy box); done before the first record, so that no event waits for them."""
        self.retries.call(self._probe, target="serve")
        self.retries.call(self.store.open, target="weaviate")
        self.retries.call(self.store.ping, target="weaviate")

    # --- reader thread ------------------------------------------------------------
    def prepare(self, records: list[KafkaRecord]) -> Batch:
        ops = [self._chunked(r, parse(r, self.pipeline.event, self.pipeline.max_text_bytes)) for r in records]
        rejected = [op for op, _ in ops if isinstance(op, Rejected)]
        if rejected:
            self.retries.call(self.dead_letter, rejected, target="kafka")

        chunks = {op.source.offset: c for op, c in ops if isinstance(op, Upsert)}
        latest = latest_per_key(op for op, _ in ops if not isinstance(op, Rejected))
        # A key whose write is still in flight may miss here and be embedded again: wasted work, never
        # a wrong vector, since the store is keyed by each chunk's text hash.
        docs = []
        for op in latest:
            if isinstance(op, Upsert):
                parts = chunks[op.source.offset]
                docs.append(Document(op, parts, self.vectors.vectors_if_unchanged(op.key, [c.text for c in parts])))
        batch = Batch(records, [op for op, _ in ops], docs, [op for op in latest if isinstance(op, Delete)])
        if texts := [t for d in batch.to_embed for t in d.missing]:
            with contextlib.suppress(Exception):  # Serve away: the writer's retries send it again
                batch.responses = self._send(texts)
            batch.started = time.perf_counter()
        return batch

    def _chunked(self, record: KafkaRecord, op):
        """(op, its chunks); an upsert that needs more than max_chunks is rejected like a parse failure."""
        if not isinstance(op, Upsert):
            return op, None
        chunks = self.chunker.split(op.text)
        if len(chunks) > self.chunker.max_chunks:
            return Rejected.of(record, "too_many_chunks", f"the text needs {len(chunks)} chunks; the limit is "
                               f"{self.chunker.max_chunks} (pipeline.chunking.max_chunks)", "chunk"), None
        return op, chunks

    # --- writer thread ------------------------------------------------------------
    def finish(self, batch: Batch) -> int | None:
        """Wait for the vectors, write, dead-letter what was refused, count; returns the offset that may be
        committed: after the batch, or before the first record whose stale chunks are still to delete."""
        to_embed = batch.to_embed
        fresh, refused = self._embed_isolating(to_embed, batch.responses, batch.started) if to_embed else ({}, {})
        t1 = time.perf_counter()
        # Asked here, on the writer thread, after every earlier batch's write: at poll time a write in
        # flight could still change the answers.
        unknown = {d.op.key for d in batch.docs if self.vectors.chunk_count(d.op.key) is None}
        items = [Embedded(d.op, d.chunks, d.with_vectors(fresh.get(d.op.key, ())), self._shrank(d))
                 for d in batch.docs if d.op.key not in refused]
        written, rejected = self._write_isolating(items, batch.deletes)
        self.metrics.stage("upsert", len(items) + len(batch.deletes), time.perf_counter() - t1)

        by_offset = {r.offset: r for r in batch.records}
        dead = [Rejected.of(by_offset[d.op.source.offset], "embed_failed", detail, "embed")
                for d in to_embed if (detail := refused.get(d.op.key))]
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
            topic, key = item.op.source.topic, item.op.key
            if item.prune:
                self.prunes.covered(topic, key)
            elif key in unknown or (topic, key) in self.prunes:
                self.prunes.defer(topic, key, len(item.chunks), item.op.source.offset)
            self.vectors.remember(key, [c.text for c in item.chunks], item.vectors)
        for d in batch.deletes:
            self.prunes.covered(d.source.topic, d.key)
            self.vectors.forget(d.key)
        embedded = sum(len(d.missing) for d in to_embed if d.op.key not in refused)
        self.progress.count(consumed=len(batch.records), upserted=len(written), deleted=len(batch.deletes),
                            embedded=embedded, chunks_written=sum(len(e.chunks) for e in written),
                            skipped_unchanged=sum(len(d.chunks) for d in batch.docs) - sum(
                                len(d.missing) for d in to_embed), batches=1)
        self._written_to = batch.records[-1].offset + 1
        return self.settle(quiet=False)

    def settle(self, quiet: bool = True) -> int | None:
        """Send the waiting deletes of stale chunks when they are due, or at once when no batch is in
        sight (`quiet`: the writer idles), as a quiet partition commits at once; returns the offset that
        may be committed, None before this session wrote anything."""
        if self.prunes.due or (quiet and len(self.prunes)):
            t0 = time.perf_counter()
            waiting = len(self.prunes)
            self.prunes.flush(lambda stale: self.retries.call(self.store.prune, stale, target="weaviate"))
            self.metrics.stage("prune", waiting, time.perf_counter() - t0)
        if self._written_to is None:
            return None
        first = self.prunes.first_offset  # may be a record a failed session wrote, past this one's
        return self._written_to if first is None else min(first, self._written_to)

    def _shrank(self, doc: Document) -> bool:
        """Did this consumer write the key with more chunks than it has now? Then the rest goes with
        the write. An unknown key's possible rest is deleted later (actors/prunes.py)."""
        known = self.vectors.chunk_count(doc.op.key)
        return known is not None and known > len(doc.chunks)

    def dead_letter(self, rejected: list[Rejected]) -> None:
        self.dead_letters.send(rejected)
        self.progress.count(dead_lettered=len(rejected))
        for r in rejected:
            self.metrics.dead_letter(r.reason)
            log.warning("%s offset %d -> DLQ at %s: %s (%s)", r.source.topic, r.source.offset, r.step, r.reason,
                        r.detail)

    def _embed_isolating(self, docs: list[Document], responses, started: float):
        """(new vectors by key, error by refused key). A refused batch is split in halves until each refused
        document is alone; a lone refused document is poison only if the embedder then embeds PROBE_TEXT,
        so an embedder that refuses everything is retried as unavailable, never dead-letters a stream."""
        sent = [responses] if responses is not None else []

        def embed(group) -> np.ndarray:  # the calls sent at poll time first, new ones after
            texts = [t for d in group for t in d.missing]
            if group is docs:  # the whole batch: a refusal is tried again a few times first
                return self.retries.attempts(lambda: self._embed(texts, sent.pop() if sent else None),
                                             target="serve")
            return self.retries.call(self._embed, texts, target="serve")

        done, refused = split_refused(docs, embed, EmbedRejected)
        if refused:
            self.retries.call(self._probe, target="serve")
        self.metrics.stage("embed", sum(len(d.missing) for d in docs), time.perf_counter() - started)
        vectors = {}
        for group, out in done:
            start = 0
            for d in group:
                vectors[d.op.key], start = out[start:start + len(d.missing)], start + len(d.missing)
        return vectors, {d.op.key: str(exc) for d, exc in refused}

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
        return [item for i, item in enumerate(items) if i not in pending], [(items[i], m) for i, m in pending.items()]

    def _send(self, texts: list[str]) -> list:
        return [self.embedder.embed.remote(texts[i:i + EMBED_CALL_TEXTS]) for i in range(0, len(texts), EMBED_CALL_TEXTS)]

    def _embed(self, texts: list[str], responses=None) -> np.ndarray:
        """The vectors for `texts`, from `responses` when the calls were already sent."""
        responses = responses or self._send(texts)
        deadline = time.monotonic() + EMBED_TIMEOUT_S + EMBED_TIMEOUT_S_PER_TEXT * len(texts)
        try:
            parts = [self._result(r, deadline) for r in responses]
            vectors = np.concatenate(parts) if len(parts) != 1 else parts[0]
        except Exception as exc:
            for r in responses:  # a retry sends them again: the replicas should not do the work twice
                with contextlib.suppress(Exception):
                    r.cancel()
            if is_refusal(exc):  # the replica's own code raised: these texts (or the model) are refused
                cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else exc
                raise EmbedRejected(f"the embedder refused {len(texts)} texts: {type(cause).__name__}: "
                                    f"{str(cause)[:300]}") from exc
            raise EmbedError(f"embedding {len(texts)} texts failed: {type(exc).__name__}: {exc}") from exc
        if vectors.shape != (len(texts), self.model.dim):
            raise EmbedError(f"embedder returned shape {vectors.shape}, expected ({len(texts)}, {self.model.dim})")
        return vectors

    def _result(self, response, deadline: float):
        """`response.result()` by the deadline, in short waits that end early when the session stops."""
        while True:
            if self.stopped.is_set():
                raise TimeoutError("the session stopped while waiting for the embedder")
            try:
                return response.result(timeout_s=max(0.0, min(RESULT_WAIT_S, deadline - time.monotonic())))
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise
