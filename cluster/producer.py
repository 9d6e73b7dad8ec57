"""Send document events to Kafka in freshvec's event format, with progress and an optional rate."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator

from freshvec.core.config import FreshvecConfig
from freshvec.core.errors import ConfigError, KafkaUnavailableError

Event = tuple[str, dict | None]  # (document id, value); a None value is a tombstone (delete)


def read_jsonl(lines: Iterable[str]) -> Iterator[Event]:
    """Lines like {"id": "doc-1", "text": "...", "metadata": {...}} or {"id": "doc-1", "delete": true}."""
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            key = str(obj.pop("id"))
        except (json.JSONDecodeError, KeyError, AttributeError) as exc:
            raise ConfigError(f"line {n}: expected a JSON object with an \"id\": {exc}") from None
        yield key, None if obj.get("delete") else obj


def make_producer(cfg: FreshvecConfig):
    """A confluent-kafka (librdkafka) producer with the config's producer settings."""
    from confluent_kafka import Producer

    from freshvec.core.kafka import producer_config

    return Producer(producer_config(cfg.kafka))


def produce(cfg: FreshvecConfig, events: Iterable[Event], topic: str | None = None, rate: float | None = None,
            total: int | None = None, progress: bool = True) -> int:
    """Send every event (waiting for every acknowledgement at the end); returns how many were sent."""
    from tqdm import tqdm

    topic = topic or cfg.kafka.topics[0]
    producer = make_producer(cfg)
    failed: list = []

    def delivered(err, _message) -> None:
        if err is not None:
            failed.append(err)

    bar = tqdm(total=total, unit="ev", desc=f"produce -> {topic}", disable=not progress, file=sys.stderr)
    sent, start = 0, time.perf_counter()
    try:
        for i, (key, value) in enumerate(events):
            if rate:  # pace against the start time so the average rate holds
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            payload = None if value is None else json.dumps(value).encode()
            while True:
                try:
                    producer.produce(topic, key=key.encode(), value=payload, on_delivery=delivered)
                    break
                except BufferError:  # librdkafka's send queue is full: let acknowledgements drain it
                    producer.poll(0.1)
            producer.poll(0)  # run the delivery callbacks of what was acknowledged so far
            sent += 1
            bar.update(1)
    finally:
        unacknowledged = producer.flush(60)
        bar.close()
    if failed or unacknowledged:
        raise KafkaUnavailableError(f"{len(failed) + unacknowledged} of {sent} events were not acknowledged by Kafka: "
                           f"{failed[0] if failed else 'no answer within 60 s'}")
    return sent
