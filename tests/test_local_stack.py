"""The local stack is real: a Kafka broker, a Weaviate server and a Ray cluster."""

from __future__ import annotations

import uuid

import numpy as np
import pytest


def test_kafka_round_trip(kafka):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    topic = f"test-roundtrip-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks=1, linger_ms=0)
    sent = producer.send(topic, key=b"doc-1", value=b'{"text": "hello"}').get(timeout=30)
    producer.close()

    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, enable_auto_commit=False)
    tp = TopicPartition(topic, sent.partition)
    consumer.assign([tp])
    consumer.seek(tp, sent.offset)
    records = consumer.poll(timeout_ms=10_000).get(tp, [])
    consumer.close()
    assert [(r.key, r.value) for r in records] == [(b"doc-1", b'{"text": "hello"}')]


def test_weaviate_near_vector(weaviate_server):
    import weaviate
    from weaviate.classes.config import Configure, DataType, Property

    client = weaviate.connect_to_local(port=weaviate_server.http_port, grpc_port=weaviate_server.grpc_port)
    name = f"StackTest{uuid.uuid4().hex[:8]}"
    try:
        collection = client.collections.create(
            name, properties=[Property(name="text", data_type=DataType.TEXT)],
            vector_config=Configure.Vectors.self_provided(),
        )
        rng = np.random.default_rng(0)
        vectors = rng.normal(size=(3, 8)).astype(np.float32)
        ids = [collection.data.insert({"text": f"doc {i}"}, vector=v.tolist()) for i, v in enumerate(vectors)]
        result = collection.query.near_vector(vectors[1].tolist(), limit=1, return_metadata=["distance"])
        assert result.objects[0].uuid == ids[1]
        assert result.objects[0].properties["text"] == "doc 1"
        assert result.objects[0].metadata.distance == pytest.approx(0.0, abs=1e-5)
    finally:
        client.collections.delete(name)
        client.close()


def test_ray_cluster_starts_and_stops(ray_temp_dir, shared_ray):
    import ray

    shared_ray.release()  # a Ray of this test's own
    ray.init(num_cpus=1, include_dashboard=False, object_store_memory=100 * 1024**2,
             labels={"region": "local-test"}, _temp_dir=ray_temp_dir)
    try:
        @ray.remote(num_cpus=0.1)
        def node_labels():
            return ray.get_runtime_context().get_node_labels()

        assert ray.get(node_labels.remote())["region"] == "local-test"
        assert len([n for n in ray.nodes() if n["Alive"]]) == 1
    finally:
        ray.shutdown()
    assert not ray.is_initialized()


def test_skipped_setup_names_what_is_missing(monkeypatch, tmp_path):
    from freshvec.core.errors import SetupError
    from freshvec.deploy.local import paths

    monkeypatch.setenv("FRESHVEC_CACHE", str(tmp_path))
    with pytest.raises(SetupError, match=r"weaviate-server binary not found at .*make setup"):
        paths.weaviate_binary()
    with pytest.raises(SetupError, match=r"Kafka jars not found in .*make setup"):
        paths.kafka_libs()


def test_kafka_cluster_ids_never_look_like_an_option():
    from freshvec.deploy.local.kafka.broker import new_cluster_id

    ids = [new_cluster_id() for _ in range(2000)]  # about 31 of them would start with '-' unchecked
    assert not any(i.startswith("-") for i in ids) and all(len(i) == 22 for i in ids)
