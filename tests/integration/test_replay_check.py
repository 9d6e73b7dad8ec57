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


def test_a_key_lands_in_one_partition_whichever_client_sent_it(kafka):
    """freshvec's producer (librdkafka) partitions keys as Java clients and kafka-python do, so a key
    sent by both keeps its order (a replay found one key's older text written last when they differed)."""
    from kafka import KafkaProducer

    from freshvec.cluster.producer import make_producer
    from freshvec.core.config import parse_config
    from freshvec.core.kafka import admin, ensure_topics

    topic = f"it-partitioner-{uuid.uuid4().hex[:8]}"
    cfg = parse_config({"kafka": {"topics": [topic]}})
    ensure_topics(cfg.kafka, {topic: 4})
    ours, theirs = make_producer(cfg), KafkaProducer(bootstrap_servers=cfg.kafka.bootstrap_servers)
    try:
        where: dict[str, list[int]] = {}
        for i in range(40):
            key = f"doc-{i}"
            ours.produce(topic, key=key.encode(), value=b"{}",
                         on_delivery=lambda err, msg, key=key: where.setdefault(key, []).append(msg.partition()))
            where.setdefault(key, []).append(theirs.send(topic, key=key.encode(), value=b"{}").get(30).partition)
        ours.flush(30)
        assert {k: len(set(v)) for k, v in where.items()} == {f"doc-{i}": 1 for i in range(40)}, where
        assert len({v[0] for v in where.values()}) > 1  # the keys spread over the partitions
    finally:
        theirs.close()
        client = admin(cfg.kafka)
        try:
            client.delete_topics([topic])
        finally:
            client.close()
