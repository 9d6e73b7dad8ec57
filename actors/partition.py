"""One partition's Kafka I/O: read from the group's committed offset, in batches; commit; measure lag.

librdkafka (confluent-kafka) rather than kafka-python: its I/O thread is C, where kafka-python's
cost each idle consumer about 3 % of a core. The partition is assigned, not subscribed: one consumer
per partition, no group rebalancing, offsets still committed to the group. Every Kafka error leaves
this module as KafkaUnavailableError (retried) or KafkaRefused (not), see core/kafka.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from freshvec.core.errors import KafkaUnavailableError
from freshvec.core.kafka import CONSUMER, kafka_errors, librdkafka
from freshvec.core.records import KafkaRecord

log = logging.getLogger("freshvec.consumer")

POLL_TIMEOUT_S = 0.1
# librdkafka prefetches in the background; at most this much per partition, so while Weaviate is
# away the backlog stays in Kafka, not in this process (its default is 64 MB).
PREFETCH_KBYTES = 1024
# librdkafka's fetcher for an assigned (not subscribed) partition sometimes stops for good after the
# broker restarts: polls return nothing while the log grows (librdkafka issue 5153, open; a chaos run
# lost the tail of one partition to it), or cannot reach the broker at all. Behind the log end (or
# unable to learn it) this long with nothing read is a stall: the session starts over with a new
# client, which fetches at once.
FETCH_STALL_S = 5.0
STALL_CHECK_S = 1.0


def _confluent_consumer(settings: dict[str, Any]):
    from confluent_kafka import Consumer

    return Consumer(settings)


class PartitionReader:
    def __init__(self, kafka, topic: str, partition: int, client_rack: str | None = None,
                 client: Callable[[dict[str, Any]], Any] = _confluent_consumer):
        """`kafka`: a KafkaConfig; `client`: makes the confluent-kafka Consumer from its settings."""
        from confluent_kafka import TopicPartition

        self.topic, self.partition = topic, partition
        self.brokers = kafka.bootstrap_servers
        self._tp = TopicPartition(topic, partition)
        self.end_offset: int | None = None  # the log end offset the last `lag` saw
        self.position: int | None = None  # the offset after the last record read (None: the log start)
        self._behind_since: float | None = None
        self._stall_checked = 0.0
        rack = {"client_rack": client_rack} if client_rack else {}
        with kafka_errors("consumer set-up", self.brokers):
            self._consumer = client({
                "bootstrap.servers": ",".join(kafka.bootstrap_servers), "logger": log, "group.id": kafka.group_id,
                "enable.auto.commit": False, "auto.offset.reset": "earliest",
                "queued.max.messages.kbytes": PREFETCH_KBYTES, **librdkafka({**kafka.consumer, **rack}, CONSUMER),
            })

    def start(self) -> int | None:
        """Assign the partition at the group's committed offset (the beginning when it has none); returns it."""
        from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

        with kafka_errors("reading the committed offset", self.brokers):
            (committed,) = self._consumer.committed([self._tp], timeout=10)
            if committed.error:
                raise KafkaException(committed.error)
        offset = committed.offset if committed.offset >= 0 else None
        self.position, self._behind_since = offset, None
        with kafka_errors("assign", self.brokers):
            self._consumer.assign([TopicPartition(self.topic, self.partition,
                                                  offset if offset is not None else OFFSET_BEGINNING)])
        return offset

    def next_batch(self, max_records: int, max_wait_ms: int, first_wait_s: float = POLL_TIMEOUT_S) -> list[KafkaRecord]:
        """Up to `max_records` records; waits at most `first_wait_s` for the first, then `max_wait_ms` more."""
        from confluent_kafka import KafkaException

        with kafka_errors("poll", self.brokers):
            first = self._consumer.poll(first_wait_s)  # returns as soon as one record is there
            if first is None:
                self._check_stall()
                return []
            messages = [first]
            if max_records > 1:
                # consume() returns when it has all it asked for or the wait is over; 0 takes what is queued.
                messages += self._consumer.consume(max_records - 1, max_wait_ms / 1000)
            for message in messages:
                if message.error():  # a partition-level error, not a record: start over from the commit
                    raise KafkaException(message.error())
        self.position, self._behind_since = messages[-1].offset() + 1, None
        return [KafkaRecord.of(m) for m in messages]

    def _check_stall(self) -> None:
        """Raise KafkaUnavailableError when, for FETCH_STALL_S while polls brought nothing, the broker's
        log has gone past this reader's position or this client could not ask it (see FETCH_STALL_S).
        Asks at most once a second. A client that cannot reach a broker that is up stays that way too
        (a chaos run's consumer read nothing for minutes after a broker restart, every query failing);
        while the broker is really down, starting over costs nothing and backs off."""
        now = time.monotonic()
        if now - self._stall_checked < STALL_CHECK_S:
            return
        self._stall_checked = now
        try:
            low, high = self._consumer.get_watermark_offsets(self._tp, timeout=2)
            position = self.position if self.position is not None else low
            behind = f"has records up to offset {high - 1}, nothing read past {position}" if high > position else None
        except Exception as exc:
            behind = f"the client cannot ask for the log end ({type(exc).__name__}: {exc})"
        if behind is None:
            self._behind_since = None
        elif self._behind_since is None:
            self._behind_since = now
        elif now - self._behind_since >= FETCH_STALL_S:
            raise KafkaUnavailableError(
                f"kafka fetch stalled ({', '.join(self.brokers)}): {self.topic}[{self.partition}] {behind}, "
                f"for {now - self._behind_since:.0f} s; starting over with a new client")

    def commit(self, offset: int) -> None:
        """Commit `offset` (the next record to read) to the group, synchronously."""
        from confluent_kafka import TopicPartition

        with kafka_errors("commit", self.brokers):
            self._consumer.commit(offsets=[TopicPartition(self.topic, self.partition, offset)], asynchronous=False)

    def lag(self, committed: int | None, cached: bool = False) -> int | None:
        """Log end offset minus `committed` (the whole log while nothing is committed); None when unknown.

        `cached`: the end offset the last fetch brought, no broker round trip; while nothing is
        fetched (the reader waits for the writer) that value goes stale, so then the broker is asked.
        """
        try:
            low, high = self._consumer.get_watermark_offsets(self._tp, timeout=5, cached=cached)
            if cached and (high < 0 or (committed is None and low < 0)):  # no fetch has brought them yet
                low, high = self._consumer.get_watermark_offsets(self._tp, timeout=5)
        except Exception:  # the broker is away: the caller keeps the last value
            return None
        self.end_offset = high
        return max(high - (committed if committed is not None else low), 0)

    def close(self) -> None:
        self._consumer.close()
