"""The Weaviate store: connection, object ids, idempotent writes (the collection itself: core/collections.py).

Every write is idempotent (objects are addressed by ``object_id(topic, key)``),
so a batch that failed halfway is simply written again. Any failure is raised
as ``SinkError`` (retriable); the consumer then backs off and does not commit.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from freshvec.core.records import Chunk, Delete, Upsert, object_id
from freshvec.core.config import WeaviateConfig
from freshvec.core.errors import SinkError, WriteRejected
from freshvec.core.identity import ModelInfo


def _not_a_refused_batch(record: logging.LogRecord) -> bool:
    """The client logs each refused object of insert_many with its whole vector (kilobytes per
    object); the consumer logs each refusal itself, in one line."""
    return not (isinstance(record.msg, dict) and "errors" in record.msg)


logging.getLogger("weaviate-client").addFilter(_not_a_refused_batch)

# Per-object refusals that say Weaviate itself is unwell, not the object: retried without limit.
SYSTEMIC = ("read-only", "readonly", "context deadline exceeded", "connection", "unavailable", "timeout",
            "too many requests")


@dataclass(frozen=True)
class Embedded:
    """A document's upsert with its chunks and their vectors, written together."""

    op: Upsert
    chunks: Sequence[Chunk]
    vectors: Sequence[np.ndarray]
    # Delete the key's chunks numbered len(chunks) and up with the write: what a longer earlier version
    # left. False when the consumer knows the key had no more chunks, or defers the delete (actors/prunes.py).
    prune: bool = True


# Weaviate's QUERY_MAXIMUM_RESULTS (default 10,000) caps the objects one delete_many removes.
DELETE_PAGE = 10_000


def connect(cfg: WeaviateConfig):
    """A weaviate-client v4 connection (HTTP + gRPC) to the configured server."""
    import weaviate
    from weaviate.classes.init import AdditionalConfig, Auth, Timeout

    return weaviate.connect_to_local(
        host=cfg.host, port=cfg.http_port, grpc_port=cfg.grpc_port,
        auth_credentials=Auth.api_key(cfg.api_key.get_secret_value()) if cfg.api_key else None,
        additional_config=AdditionalConfig(timeout=Timeout(init=10, query=30, insert=60)),
        skip_init_checks=True,
    )


@contextmanager
def weaviate_errors(action: str):
    """Translate every client-side failure into SinkError, the one type the consumer retries."""
    from weaviate.exceptions import WeaviateBaseError

    try:
        yield
    except (WeaviateBaseError, ConnectionError, TimeoutError, OSError) as exc:
        raise SinkError(f"weaviate {action} failed: {exc}") from exc


def metadata_terms(metadata: dict) -> list[str]:
    """`key=value` strings, so /search can filter on any metadata key with one indexed property."""
    return [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in metadata.items()]


class WeaviateStore:
    """One consumer's connection to its collection, opened once and written batch after batch."""

    def __init__(self, cfg: WeaviateConfig, model: ModelInfo):
        self.cfg, self.model = cfg, model
        self.client = None
        self.collection = None

    def open(self) -> None:
        with weaviate_errors("connect"):
            self.client = connect(self.cfg)
            self.collection = self.client.collections.use(self.cfg.collection)  # built once, not per write

    def ping(self) -> None:
        """One cheap gRPC round trip, to open the channel before the first write."""
        with weaviate_errors("ping"):
            self.collection.query.fetch_objects(limit=1, return_properties=[])

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = self.collection = None

    def write(self, items: Sequence[Embedded], deletes: Sequence[Delete], refused_before: bool = False) -> None:
        """Write one batch: every chunk of each document, then remove what a shorter earlier version
        left and every chunk of each deleted key; returns only when Weaviate confirmed all of it.

        Raises WriteRejected (keyed by item; the others are written and pruned) when Weaviate refused
        objects for what they are, SinkError when it failed as a whole or refused objects for its own
        state: a message that says so, or one message for every document of a batch. `refused_before`:
        these were refused while others were written, so Weaviate works and one message for all is theirs.
        """
        if self.client is None:
            self.open()
        ingest_ms = int(time.time() * 1000)
        errors: dict[int, str] = {}
        with weaviate_errors("write"):
            if items:
                errors = self._insert(items, ingest_ms, refused_before)
            stale = [(e.op.source.topic, e.op.key, len(e.chunks)) for i, e in enumerate(items)
                     if e.prune and i not in errors]
            stale += [(d.source.topic, d.key, 0) for d in deletes]
            if stale:
                self._delete_where(_stale_filter(stale))
        if errors:
            first = next(iter(errors.values()))
            raise WriteRejected(f"weaviate rejected {len(errors)} of {len(items)} documents: {first}", errors)

    def prune(self, stale: Sequence[tuple[str, str, int]]) -> None:
        """Delete the chunks numbered `keep` and up of each (topic, key, keep), in one request."""
        if self.client is None:
            self.open()
        with weaviate_errors("delete"):
            self._delete_where(_stale_filter(list(stale)))

    def _insert(self, items: Sequence[Embedded], ingest_ms: int, refused_before: bool) -> dict[int, str]:
        """Insert every chunk; the refusal of each refused document (by its index in `items`)."""
        from weaviate.classes.data import DataObject
        from weaviate.exceptions import WeaviateInsertManyAllFailedError

        owner: list[int] = []  # object -> item
        objects = []
        for i, e in enumerate(items):
            topic, key, count = e.op.source.topic, e.op.key, len(e.chunks)
            shared = _properties(e.op, self.model.model, ingest_ms)
            for n, (chunk, vector) in enumerate(zip(e.chunks, e.vectors)):
                # A batch import with an existing id replaces the object: an upsert.
                objects.append(DataObject(properties={**shared, "text": chunk.text, "chunk_index": n,
                                                      "chunk_count": count, "char_start": chunk.start,
                                                      "char_end": chunk.end},
                                          uuid=object_id(topic, key, n), vector=vector.tolist()))
                owner.append(i)
        try:
            result = self.collection.data.insert_many(objects)
            errors = {owner[i]: e.message for i, e in result.errors.items()}
            distinct = len({e.message for e in result.errors.values()})
        except WeaviateInsertManyAllFailedError as exc:  # the client names no object then
            errors = dict.fromkeys(range(len(items)), str(exc))
            distinct = str(exc).count("\n") + 1  # it lists each distinct message on a line
        if errors:
            first = next(iter(errors.values()))
            same_for_all = len(items) > 1 and len(errors) == len(items) and distinct == 1
            if (same_for_all and not refused_before) or any(m in first.lower() for m in SYSTEMIC):
                # Weaviate's state, not these documents: retried without limit
                raise SinkError(f"weaviate rejected {len(errors)} of {len(items)} documents: {first}")
        return errors

    def _delete_where(self, where) -> None:
        while True:
            result = self.collection.data.delete_many(where=where)
            if result.failed:
                raise SinkError(f"weaviate failed to delete {result.failed} of {result.matches} stale objects")
            if result.matches < DELETE_PAGE:
                return


def _stale_filter(stale: list[tuple[str, str, int]]):
    """The chunks numbered `keep` and up of each (topic, key, keep); keep 0: all of them, also an object
    of an older freshvec. One clause per (topic, keep): a batch of short documents is one key-set
    lookup and one range, where a clause per document made Weaviate evaluate a 64-way OR per batch."""
    from weaviate.classes.query import Filter

    groups: dict[tuple[str, int], list[str]] = {}
    for topic, key, keep in stale:
        groups.setdefault((topic, keep), []).append(key)
    parts = []
    for (topic, keep), keys in groups.items():
        where = Filter.by_property("doc_id").contains_any(keys) & Filter.by_property("source_topic").equal(topic)
        parts.append(where & Filter.by_property("chunk_index").greater_or_equal(keep) if keep else where)
    return Filter.any_of(parts) if len(parts) > 1 else parts[0]


def _properties(op: Upsert, model: str, ingest_ms: int) -> dict:
    return {
        "doc_id": op.key,
        "metadata": json.dumps(op.metadata, sort_keys=True),
        "metadata_terms": metadata_terms(op.metadata),
        "source_topic": op.source.topic,
        "source_partition": op.source.partition,
        "source_offset": op.source.offset,
        "event_ts_ms": op.source.timestamp_ms,
        "ingest_ts_ms": ingest_ms,
        "model": model,
    }


def is_ready(cfg: WeaviateConfig) -> bool:
    """Does the server answer and say it is ready?"""
    try:
        with connect(cfg) as client:
            return client.is_ready()
    except Exception:  # the client raises on a refused connection, answers False on a bad status
        return False
