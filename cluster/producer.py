"""Send document events to Kafka in freshvec's event format, with progress and an optional rate."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator

from cluster.config import FreshvecConfig

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
            raise ValueError(f"line {n}: expected a JSON object with an \"id\": {exc}") from None
        yield key, None if obj.get("delete") else obj


def make_producer(cfg: FreshvecConfig):
    from kafka import KafkaProducer

    return KafkaProducer(bootstrap_servers=cfg.kafka.bootstrap_servers, **cfg.kafka.producer)


def produce(cfg: FreshvecConfig, events: Iterable[Event], topic: str | None = None, rate: float | None = None,
            total: int | None = None, progress: bool = True) -> int:
    """Send every event (waiting for each acknowledgement at the end); returns how many were sent."""
    from tqdm import tqdm

    topic = topic or cfg.kafka.topics[0]
    producer = make_producer(cfg)
    bar = tqdm(total=total, unit="ev", desc=f"produce -> {topic}", disable=not progress, file=sys.stderr)
    futures, start = [], time.perf_counter()
    try:
        for i, (key, value) in enumerate(events):
            if rate:  # pace against the start time so the average rate holds
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            payload = None if value is None else json.dumps(value).encode()
            futures.append(producer.send(topic, key=key.encode(), value=payload))
            bar.update(1)
        for f in futures:
            f.get(timeout=60)
    finally:
        bar.close()
        producer.close()
    return len(futures)
