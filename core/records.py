"""Turn raw Kafka records into document operations, or into a reason they can never succeed.

Pure functions, no I/O: the consumer decides what to do with the result. A
record is one of

* ``Upsert``: key plus text and metadata, to be embedded and written;
* ``Delete``: a tombstone (null value) for the key;
* ``Rejected``: it can never succeed; it goes to the dead-letter topic with ``reason``.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from freshvec.core.config import EventFormat

# Fixed namespace: the same topic and key give the same object id in every process and run.
FRESHVEC_NAMESPACE = uuid.UUID("6f7c1f0e-5d1c-4e0b-9a57-3f2d0c1e9b11")

MAX_METADATA_KEYS = 64
MAX_METADATA_KEY_BYTES = 128


def object_id(topic: str, key: str, chunk: int = 0) -> uuid.UUID:
    """The Weaviate object id of a document's chunk: uuid5 of topic, key and chunk index, so replays
    overwrite. Chunk 0 keeps the id a document had before chunking, so an index written by an older
    freshvec is overwritten in place rather than left with a duplicate."""
    name = f"{topic}\x00{key}" if chunk == 0 else f"{topic}\x00{key}\x00{chunk}"
    return uuid.uuid5(FRESHVEC_NAMESPACE, name)


@dataclass(frozen=True)
class Source:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int  # the event time Kafka stored with the record


@dataclass(frozen=True, slots=True)
class Chunk:
    """A part of a document that the model reads whole (actors/chunker.py); one Weaviate object."""

    text: str
    start: int  # character offsets in the document: text == document[start:end]
    end: int


@dataclass(frozen=True)
class Upsert:
    key: str
    text: str
    metadata: dict[str, str | int | float | bool]
    source: Source


@dataclass(frozen=True)
class Delete:
    key: str
    source: Source


@dataclass(frozen=True)
class Rejected:
    reason: str  # a short code, e.g. "value_not_json"; the DLQ header "reason"
    detail: str  # what was wrong, for people
    source: Source
    key: bytes | None = None
    value: bytes | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    step: str = "parse"  # where it failed: parse, embed or write; the DLQ header "step"

    @classmethod
    def of(cls, record: KafkaRecord, reason: str, detail: str, step: str = "parse") -> Rejected:
        return cls(reason, detail, Source(record.topic, record.partition, record.offset, record.timestamp),
                   record.key, record.value, list(record.headers or []), step)


Operation = Upsert | Delete | Rejected


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """What `parse` reads of a record."""

    topic: str
    partition: int
    offset: int
    timestamp: int  # ms; the producer's CreateTime unless the topic stamps LogAppendTime
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    @classmethod
    def of(cls, message) -> KafkaRecord:
        """From a confluent-kafka Message (whose fields are methods)."""
        return cls(message.topic(), message.partition(), message.offset(), message.timestamp()[1],
                   message.key(), message.value(), message.headers() or [])


def parse(record: KafkaRecord, fmt: EventFormat, max_text_bytes: int) -> Operation:
    """Classify one record (a KafkaRecord, or anything with the same attributes)."""
    source = Source(record.topic, record.partition, record.offset, record.timestamp)

    def reject(reason: str, detail: str) -> Rejected:
        return Rejected.of(record, reason, detail)

    if record.key is None or record.key == b"":
        return reject("missing_key", "the record has no key; the key is the document id")
    try:
        key = record.key.decode("utf-8")
    except UnicodeDecodeError as exc:
        return reject("key_not_utf8", f"the key is not UTF-8: {exc}")
    if record.value is None:
        return Delete(key, source)
    try:
        value = json.loads(record.value.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return reject("value_not_utf8", f"the value is not UTF-8: {exc}")
    except (ValueError, RecursionError) as exc:  # ValueError: also an integer of over 4300 digits
        return reject("value_not_json", f"the value is not JSON: {str(exc)[:200]}")
    if not isinstance(value, dict):
        return reject("value_not_object", f"the value must be a JSON object, got {type(value).__name__}")

    text = value.get(fmt.text_field)
    if text is None:
        return reject("missing_text", f"the value has no {fmt.text_field!r} field")
    if not isinstance(text, str):
        return reject("text_not_string", f"{fmt.text_field!r} must be a string, got {type(text).__name__}")
    if not text.strip():
        return reject("empty_text", f"{fmt.text_field!r} is empty")
    if problem := unicode_problem(text):
        return reject("invalid_text", f"{fmt.text_field!r} {problem}")
    size = len(text.encode("utf-8"))
    if size > max_text_bytes:
        return reject("text_too_large", f"{fmt.text_field!r} is {size} bytes, the limit is {max_text_bytes}")

    metadata = value.get(fmt.metadata_field, {})
    problem = _metadata_problem(metadata, fmt.metadata_field)
    if problem:
        return reject("bad_metadata", problem)
    return Upsert(key, text, metadata if metadata is not None else {}, source)


def unicode_problem(text: str) -> str | None:
    """Why `text` cannot be stored or embedded, or None: JSON's \\ud800 escapes decode to lone
    surrogates, which no UTF-8 encoder (the tokenizer's, gRPC's, Weaviate's) accepts."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (f"is not valid Unicode: a lone surrogate U+{ord(text[exc.start]):04X} at character {exc.start} "
                "(an unpaired \\ud800-\\udfff escape)")
    return None


def _metadata_problem(metadata, name: str) -> str | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        return f"{name!r} must be an object, got {type(metadata).__name__}"
    if len(metadata) > MAX_METADATA_KEYS:
        return f"{name!r} has {len(metadata)} keys, the limit is {MAX_METADATA_KEYS}"
    for k, v in metadata.items():
        if problem := unicode_problem(k) or (unicode_problem(v) if isinstance(v, str) else None):
            return f"{name} key {k[:32]!r} {problem}"
        if len(k.encode("utf-8")) > MAX_METADATA_KEY_BYTES:
            return f"{name!r} key {k[:32]!r}... is longer than {MAX_METADATA_KEY_BYTES} bytes"
        if not isinstance(v, str | int | float | bool):
            return f"{name}.{k} must be a string, number or boolean, got {type(v).__name__}"
        if isinstance(v, float) and not math.isfinite(v):
            return f"{name}.{k} must be a finite number, got {v}"
    return None


def latest_per_key(operations: Iterable[Upsert | Delete]) -> list[Upsert | Delete]:
    """Keep only the last operation of each key, in first-seen order.

    Within one batch only the final state of a key matters; writing just that
    keeps per-key order without ordering writes inside the batch.
    """
    last: dict[str, Upsert | Delete] = {}
    for op in operations:
        last.pop(op.key, None)  # re-insert so dict order follows the latest occurrence
        last[op.key] = op
    return list(last.values())
