"""The dead-letter writer: records that can never succeed go to the DLQ topic with the reason.

Each dead letter keeps the original key and value and carries headers a person or a replay tool
reads: `reason` (a short code), `step` (parse, embed or write), `detail` (what was wrong) and where
the original is (`source.topic`, `source.partition`, `source.offset`). `send` returns only when Kafka
acknowledged every one, since the consumer commits past these records right after.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from freshvec.core.errors import KafkaUnavailableError
from freshvec.core.kafka import kafka_errors, producer_config
from freshvec.core.records import Rejected

log = logging.getLogger("freshvec.consumer")

MAX_DETAIL_BYTES = 1000
TRUNCATED_VALUE_BYTES = 65536  # what is kept of a value too large for the DLQ
FLUSH_TIMEOUT_S = 30


def _confluent_producer(settings: dict[str, Any]):
    from confluent_kafka import Producer

    return Producer(settings)


def headers(r: Rejected) -> list[tuple[str, bytes]]:
    return [("reason", r.reason.encode()), ("step", r.step.encode()),
            ("detail", r.detail.encode("utf-8", "backslashreplace")[:MAX_DETAIL_BYTES]),
            ("source.topic", r.source.topic.encode()),
            ("source.partition", str(r.source.partition).encode()),
            ("source.offset", str(r.source.offset).encode())]


class DeadLetterWriter:
    def __init__(self, kafka, topic: str, client: Callable[[dict[str, Any]], Any] = _confluent_producer):
        """`kafka`: a KafkaConfig (its brokers and producer settings); `topic`: the DLQ topic."""
        self.topic, self.brokers = topic, kafka.bootstrap_servers
        with kafka_errors("DLQ producer set-up", self.brokers):
            self._producer = client({**producer_config(kafka), "logger": log})

    def send(self, rejected: list[Rejected]) -> None:
        """Produce every record and wait for Kafka's acknowledgements; KafkaUnavailableError otherwise."""
        from confluent_kafka import KafkaError, KafkaException

        failed: list = []

        def delivered(err, _message) -> None:
            if err is not None:
                failed.append(err)

        with kafka_errors("dead-lettering", self.brokers):
            for r in rejected:
                try:
                    self._producer.produce(self.topic, key=r.key, value=r.value, headers=headers(r),
                                           on_delivery=delivered)
                except KafkaException as exc:
                    if exc.args[0].code() != KafkaError.MSG_SIZE_TOO_LARGE:
                        raise
                    # Too big for the DLQ: keep the reason and where to find the original.
                    self._producer.produce(
                        self.topic, key=r.key, value=(r.value or b"")[:TRUNCATED_VALUE_BYTES],
                        headers=[*headers(r), ("value.truncated_from", str(len(r.value or b"")).encode())],
                        on_delivery=delivered)
            unsent = self._producer.flush(FLUSH_TIMEOUT_S)
        if unsent or failed:
            raise KafkaUnavailableError(f"writing {len(rejected)} records to the DLQ failed: "
                                        f"{failed[0] if failed else f'{unsent} not delivered in {FLUSH_TIMEOUT_S} s'}")

    def close(self) -> None:
        self._producer.flush(5)


class Discarded:
    """In place of the DLQ for a reindex's shadow consumers: what they reject, the live consumers
    already dead-lettered when they first read it."""

    def send(self, rejected: list[Rejected]) -> None:
        log.debug("not dead-lettered again (a replay): %d records", len(rejected))

    def close(self) -> None:
        pass
