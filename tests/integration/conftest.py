"""A real pipeline for each test: local Ray + Serve embedder (shared per module), fresh topic and collection."""

from __future__ import annotations

import contextlib
import time
import uuid

import pytest


def wait_until(condition, timeout: float, what: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


SERVE_PORT = 18000
API_KEY = "test-key-123"  # the HTTP routes need it as a bearer token
SERVE_COLLECTION = f"ItServe{uuid.uuid4().hex[:8]}"  # what the HTTP /search route reads


@pytest.fixture(scope="module")
def serve_config():
    from freshvec.core.config import parse_config

    return parse_config({"http": {"port": SERVE_PORT, "max_texts": 64, "max_k": 50, "api_key": API_KEY},
                         "embedding": {"threads": 2}, "weaviate": {"collection": SERVE_COLLECTION}})


@pytest.fixture(scope="module")
def serve_app(kafka, weaviate_server, ray_module, serve_config, shared_ray):
    """The Serve embedder (and its HTTP routes) for `serve_config`; yields the ModelInfo it reports.
    Kept for the next module that asks for the same config (tests/conftest.py: SharedRay)."""
    return shared_ray.serve(serve_config)


@pytest.fixture(scope="module")
def ray_module(shared_ray):
    """The shared single-node Ray; modules that need another override this with `shared_ray.own(...)`."""
    shared_ray.ray()


@pytest.fixture(scope="module")
def ray_temp_dir_module():
    import shutil
    import tempfile

    path = tempfile.mkdtemp(prefix="fvray-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Env:
    """One test's pipeline: its own topic, DLQ and collection; helpers to produce and read back."""

    def __init__(self, cfg, info, partitions: int):
        self.cfg, self.info, self.partitions = cfg, info, partitions
        self.topic = cfg.kafka.topics[0]
        self.supervisor = None
        self._producer = None

    def start(self):
        from freshvec.cluster.pipeline import start_pipeline

        self.supervisor = start_pipeline(self.cfg, self.info)
        return self

    @property
    def producer(self):
        if self._producer is None:
            from kafka import KafkaProducer  # a second client, independent of the pipeline's librdkafka

            self._producer = KafkaProducer(bootstrap_servers=self.cfg.kafka.bootstrap_servers,
                                           **self.cfg.kafka.producer)
        return self._producer

    def send(self, key: bytes | None, value: bytes | None, headers=None):
        return self.producer.send(self.topic, key=key, value=value, headers=headers)

    def send_doc(self, key: str, text: str | None, metadata: dict | None = None, **fields):
        """`fields`: more event fields, which the pipeline does not read (ballast for the backpressure test)."""
        import json

        value = None if text is None else json.dumps({"text": text, "metadata": metadata or {}, **fields}).encode()
        return self.send(key.encode(), value)

    def flush(self):
        self.producer.flush(timeout=30)

    def client(self):
        from freshvec.core.store import connect

        return connect(self.cfg.weaviate)

    def objects(self, include_vector: bool = False) -> list:
        """Every object in the collection (paged), as weaviate-client objects."""
        with self.client() as client:
            collection = client.collections.use(self.cfg.weaviate.collection)
            return list(collection.iterator(include_vector=include_vector))

    def texts_by_key(self) -> dict[str, str]:
        """Key -> text of documents that are one chunk each (a longer one fails: use chunks_by_key)."""
        objects = self.objects()
        assert all((o.properties.get("chunk_count") or 1) == 1 for o in objects), "a document has several chunks"
        return {o.properties["doc_id"]: o.properties["text"] for o in objects}

    def chunks_by_key(self, include_vector: bool = False) -> dict[str, list]:
        """Key -> its objects, in chunk order."""
        out: dict[str, list] = {}
        for o in self.objects(include_vector):
            out.setdefault(o.properties["doc_id"], []).append(o)
        return {k: sorted(v, key=lambda o: o.properties["chunk_index"]) for k, v in out.items()}

    def stats(self) -> list[dict]:
        import ray

        return ray.get([h.stats.remote() for h in self.supervisor.consumers().values()])

    def stop(self):
        from freshvec.core.collections import drop

        if self.supervisor:
            self.supervisor.stop()
        if self._producer:
            self._producer.close()
        with self.client() as client:
            drop(client, self.cfg.weaviate.collection)
        # Topics too: hundreds of partitions left from earlier tests slow the broker down, and the
        # backpressure test's topic holds 200 MB.
        from freshvec.core.kafka import admin as kafka_admin

        with contextlib.suppress(Exception):
            admin = kafka_admin(self.cfg.kafka)
            try:
                admin.delete_topics([self.topic, self.cfg.pipeline.dlq_topic])
            finally:
                admin.close()


@pytest.fixture
def make_env(serve_app):
    """Build (and afterwards tear down) a pipeline on a fresh topic with `partitions` partitions."""
    from freshvec.core.config import parse_config

    envs = []

    def make(partitions: int = 4, collection: str | None = None, consumer: dict | None = None, start: bool = True,
             topic_config: dict | None = None, **pipeline) -> Env:
        suffix = uuid.uuid4().hex[:10]
        cfg = parse_config({
            # fetch_max_wait_ms 100 (not the seed's 1): same latency, no busy re-fetching on 2 cores.
            "kafka": {"topics": [f"it-{suffix}"], "group_id": f"it-{suffix}", "partitions_if_created": partitions,
                      "consumer": {"fetch_max_wait_ms": 100, **(consumer or {})},
                      **({"topic_config": topic_config} if topic_config is not None else {})},
            "weaviate": {"collection": collection or f"It{suffix}"},
            "pipeline": {"dlq_topic": f"it-{suffix}.dlq", **pipeline},
        })
        env = Env(cfg, serve_app, partitions)
        envs.append(env)
        if not start:  # the test produces first, then calls env.start(); the topic is made now
            from freshvec.cluster.supervisor import ensure_topics

            ensure_topics(cfg)
            return env
        return env.start()

    yield make
    for env in envs:
        env.stop()
