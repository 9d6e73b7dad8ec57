"""The Weaviate store: connection, the collection and its schema, object ids, idempotent writes.

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

from freshvec.core.records import Delete, Upsert, object_id
from freshvec.core.config import WeaviateConfig
from freshvec.core.errors import CollectionMismatchError, SinkError, WriteRejected
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
    """An upsert together with its vector."""

    op: Upsert
    vector: np.ndarray


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

    def ensure_collection(self) -> None:
        """Create the collection when absent; refuse one that holds another model's vectors."""
        ensure_collection(self.client, self.cfg.collection, self.model)

    def write(self, items: Sequence[Embedded], deletes: Sequence[Delete], refused_before: bool = False) -> None:
        """Write one batch; returns only when Weaviate confirmed every object.

        Raises WriteRejected (the other objects are written) when Weaviate refused objects for what
        they are, SinkError when it failed as a whole or refused objects for its own state: a message
        that says so, or one message for every object of a batch. `refused_before`: these objects were
        refused while others were written, so Weaviate works and one message for all is theirs.
        """
        if self.client is None:
            self.open()
        ingest_ms = int(time.time() * 1000)
        collection = self.collection
        with weaviate_errors("write"):
            if items:
                from weaviate.classes.data import DataObject
                from weaviate.exceptions import WeaviateInsertManyAllFailedError

                # A batch import with an existing id replaces the object: an upsert.
                try:
                    result = collection.data.insert_many([
                        DataObject(properties=_properties(e.op, self.model.model, ingest_ms),
                                   uuid=object_id(e.op.source.topic, e.op.key), vector=e.vector.tolist())
                        for e in items
                    ])
                    errors = {i: e.message for i, e in result.errors.items()}
                    distinct = len(set(errors.values()))
                except WeaviateInsertManyAllFailedError as exc:  # the client names no object then
                    errors = dict.fromkeys(range(len(items)), str(exc))
                    distinct = str(exc).count("\n") + 1  # it lists each distinct message on a line
                if errors:
                    first = next(iter(errors.values()))
                    message = f"weaviate rejected {len(errors)} of {len(items)} objects: {first}"
                    same_for_all = len(items) > 1 and len(errors) == len(items) and distinct == 1
                    if (same_for_all and not refused_before) or any(m in first.lower() for m in SYSTEMIC):
                        raise SinkError(message)  # Weaviate's state, not these objects: retried without limit
                    raise WriteRejected(message, errors)
            if deletes:
                from weaviate.classes.query import Filter

                ids = [object_id(d.source.topic, d.key) for d in deletes]
                result = collection.data.delete_many(where=Filter.by_id().contains_any(ids))
                if result.failed:
                    raise SinkError(f"weaviate failed to delete {result.failed} of {len(ids)} objects")


def _properties(op: Upsert, model: str, ingest_ms: int) -> dict:
    return {
        "doc_id": op.key,
        "text": op.text,
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


def ensure_collection(client, name: str, model: ModelInfo) -> None:
    from weaviate.classes.config import Configure, DataType, Property, Tokenization

    marker = json.dumps({"freshvec_model": model.model, "dim": model.dim}, sort_keys=True)
    with weaviate_errors("collection check"):
        if client.collections.exists(name):
            _check_collection(client.collections.use(name), name, model)
            return
        client.collections.create(
            name,
            description=marker,
            vector_config=Configure.Vectors.self_provided(),  # freshvec brings every vector
            properties=[
                Property(name="doc_id", data_type=DataType.TEXT, tokenization=Tokenization.FIELD),
                Property(name="text", data_type=DataType.TEXT),
                Property(name="metadata", data_type=DataType.TEXT, index_searchable=False, index_filterable=False),
                Property(name="metadata_terms", data_type=DataType.TEXT_ARRAY, tokenization=Tokenization.FIELD),
                Property(name="source_topic", data_type=DataType.TEXT, tokenization=Tokenization.FIELD),
                Property(name="source_partition", data_type=DataType.INT),
                Property(name="source_offset", data_type=DataType.INT),
                Property(name="event_ts_ms", data_type=DataType.INT),
                Property(name="ingest_ts_ms", data_type=DataType.INT),
                Property(name="model", data_type=DataType.TEXT, tokenization=Tokenization.FIELD),
            ],
        )


def _check_collection(collection, name: str, info: ModelInfo) -> None:
    model, dim = info.model, info.dim
    config = collection.config.get()
    try:
        stored = json.loads(config.description or "")
    except json.JSONDecodeError:
        stored = None
    if isinstance(stored, dict) and (stored.get("freshvec_model"), stored.get("dim")) != (model, dim):
        raise CollectionMismatchError(
            f"collection {name} holds vectors of model {stored.get('freshvec_model')!r} ({stored.get('dim')} dims), "
            f"not {model!r} ({dim} dims); use another weaviate.collection or delete it"
        )
    # Also look at what is stored, for collections that someone else created.
    sample = collection.query.fetch_objects(limit=1, include_vector=True, return_properties=["model"])
    for obj in sample.objects:
        vector = obj.vector.get("default") if isinstance(obj.vector, dict) else obj.vector
        found_model = obj.properties.get("model")
        if (vector is not None and len(vector) != dim) or (found_model not in (None, model)):
            raise CollectionMismatchError(
                f"collection {name} holds vectors of model {found_model!r} "
                f"({len(vector) if vector is not None else '?'} dims), not {model!r} ({dim} dims); "
                "use another weaviate.collection or delete it"
            )
