"""A reindex replays the topics from their beginning, so it refuses, naming the topic and partition, a
topic whose early records are gone: not compacted, and its log no longer starting at offset 0.
Real Kafka; no Ray."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def topics(kafka):
    from freshvec.core.config import parse_config
    from freshvec.core.kafka import admin, ensure_topics

    suffix = uuid.uuid4().hex[:8]
    deleted, compacted = f"it-replay-delete-{suffix}", f"it-replay-compact-{suffix}"
    cfg = parse_config({"kafka": {"topics": [deleted, compacted]}})
    ensure_topics(cfg.kafka, {deleted: 1, compacted: 1},
                  configs={deleted: {"cleanup.policy": "delete"}, compacted: {"cleanup.policy": "compact"}})
    yield cfg, deleted, compacted
    client = admin(cfg.kafka)
    try:
        client.delete_topics([deleted, compacted])
    finally:
        client.close()


def test_a_topic_that_lost_its_first_records_is_refused_and_a_compacted_one_is_not(topics):
    from confluent_kafka import Producer, TopicPartition
    from confluent_kafka.admin import AdminClient

    from freshvec.core.kafka import replay_problems

    cfg, deleted, compacted = topics
    brokers = ",".join(cfg.kafka.bootstrap_servers)
    producer = Producer({"bootstrap.servers": brokers})
    for topic in (deleted, compacted):
        for i in range(5):
            producer.produce(topic, key=f"k{i}".encode(), value=b'{"text": "x"}')
    producer.flush(30)
    assert replay_problems(cfg.kafka, [deleted, compacted]) == []  # both still start at 0

    admin = AdminClient({"bootstrap.servers": brokers})  # what retention does to a log, here at once
    for future in admin.delete_records([TopicPartition(deleted, 0, 3)]).values():
        future.result(timeout=30)

    (problem,) = replay_problems(cfg.kafka, [deleted, compacted])
    assert problem.startswith(f"topic {deleted} partition 0 starts at offset 3, not 0, and the topic is not "
                              "compacted (cleanup.policy=delete)"), problem
