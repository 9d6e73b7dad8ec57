"""`freshvec reindex --model M` on the real stack, while events stream in and /search is called.

The second model loads offline: built (bench/common.py) from the packaged MiniLM weights with CLS pooling and a
seeded 384 -> 256 projection, saved as a sentence-transformers directory; so it also changes the
dimension. The command is interrupted in its backfill (SIGINT), which must leave the live pipeline as
it was; then undone with `--abort`; then, after another interruption, finished with `--resume` under
load.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest
import yaml

from bench.reindex import Load
from tests.integration.conftest import API_KEY, SERVE_PORT, wait_until

COLLECTION = f"ItReindex{uuid.uuid4().hex[:8]}"
TOPIC = f"it-reindex-{uuid.uuid4().hex[:8]}"
CORPUS = 600  # documents before the reindex: enough backfill to interrupt it part-way
EVENTS_PER_S = 20
QUERIES_PER_S = 5


@pytest.fixture(scope="module")
def second_model(tmp_path_factory):
    from bench.common import build_second_model

    return build_second_model(tmp_path_factory.mktemp("models") / "minilm-cls-256")


CONFIG = {
    "http": {"port": SERVE_PORT, "api_key": API_KEY, "max_k": 50},
    # As the local config: sized for the machine (2 cores: 2 replicas, so one answers while the other
    # is replaced by the new model's).
    "embedding": {"num_cpus": "auto", "threads": "auto",
                  "autoscaling": {"min_replicas": "auto", "max_replicas": "auto"}},
    "kafka": {"topics": [TOPIC], "group_id": TOPIC, "partitions_if_created": 2,
              "consumer": {"fetch_max_wait_ms": 100}},
    "weaviate": {"collection": COLLECTION},
    "pipeline": {"dlq_topic": f"{TOPIC}.dlq"},
}


@pytest.fixture(scope="module")
def serve_config():
    from freshvec.core.config import parse_config

    return parse_config(CONFIG)


@pytest.fixture(scope="module")
def pipeline(serve_app, serve_config, shared_ray, tmp_path_factory):
    """The live pipeline of `serve_config` with CORPUS documents in, its config file (for the command
    line) and the corpus (key -> text)."""
    from freshvec.cluster.pipeline import start_pipeline
    from freshvec.core import collections
    from freshvec.core.store import connect

    path = tmp_path_factory.mktemp("cfg") / "freshvec.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    supervisor = start_pipeline(serve_config, serve_app)
    load = Load(serve_config, CORPUS, EVENTS_PER_S, QUERIES_PER_S)
    for i in range(CORPUS):
        load.send(f"doc-{i}", f"document {i}: a first version about topic {i % 17}")
    load.stop()
    wait_until(lambda: len(_objects(serve_config)) >= CORPUS, 180, "the corpus in the first collection")
    yield supervisor, str(path), dict(load.latest)
    supervisor.stop()
    shared_ray.invalidate()  # the reindex replaced the app's model
    with connect(serve_config.weaviate) as client:
        collections.drop(client, COLLECTION)
        for version in (1, 2):
            client.collections.delete(f"{COLLECTION}_v{version}")
    from freshvec.core.kafka import admin

    client = admin(serve_config.kafka)
    try:
        client.delete_topics([TOPIC, f"{TOPIC}.dlq"])
    finally:
        client.close()


def _objects(cfg, include_vector=False) -> dict[str, object]:
    from freshvec.core.store import connect

    with connect(cfg.weaviate) as client:
        return {o.properties["doc_id"]: o for o in
                client.collections.use(cfg.weaviate.collection).iterator(include_vector=include_vector)}


def _interrupted_in_backfill(cfg, config_path: str, model: str, load: Load) -> None:
    """`freshvec reindex --model` as a user runs it (its own process, joining the cluster), Ctrl-C once
    its backfill wrote documents; then the live pipeline must be as it was and go on."""
    import ray

    from freshvec.cluster import reindex, status
    from freshvec.core import collections
    from freshvec.core.store import connect

    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    command = subprocess.Popen([sys.executable, "-m", "freshvec.cluster.cli", "-c", config_path, "reindex",
                                "--model", model], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    try:
        def begun():
            assert command.poll() is None, f"the command ended: {command.communicate()[0]}"
            return (s := reindex.load_state()) is not None and s.progress.get("done", 0) > 0 and s

        state = wait_until(begun, 300, "the backfill to begin", interval=0.1)
        assert state.phase == "backfill"
        line = status.collect(cfg)["reindex"]["line"]
        assert f"reindex to {model} (v2): backfill" in line and "shadow lag" in line, line
        command.send_signal(signal.SIGINT)
        out, _ = command.communicate(timeout=60)
    finally:
        command.kill()
    assert command.returncode == 130, out
    assert "--resume" in out and "--abort" in out, out
    with connect(cfg.weaviate) as client:
        assert collections.target(client, COLLECTION) == f"{COLLECTION}_v1"
    marker = f"written after the interruption {uuid.uuid4().hex[:6]}"
    load.send("doc-0", marker)
    wait_until(lambda: _objects(cfg)["doc-0"].properties["text"] == marker, 60,
               "the live pipeline to go on into the old collection")


def test_an_interrupted_reindex_is_undone_by_abort(pipeline, serve_config, second_model):
    from ray import serve

    from freshvec.cluster import cli, reindex
    from freshvec.core import collections
    from freshvec.core.kafka import committed_offsets
    from freshvec.core.store import connect

    _, config_path, corpus = pipeline
    load = Load(serve_config, CORPUS, EVENTS_PER_S, QUERIES_PER_S, api_key=API_KEY)
    load.latest.update(corpus)
    _interrupted_in_backfill(serve_config, config_path, second_model, load)
    shadow_group = reindex.load_state().group
    cli.main(["-c", config_path, "reindex", "--abort"])
    load.stop()

    assert reindex.load_state() is None
    assert "freshvec-next" not in serve.status().applications
    with connect(serve_config.weaviate) as client:
        assert collections.target(client, COLLECTION) == f"{COLLECTION}_v1"
        assert not client.collections.exists(f"{COLLECTION}_v2")
    assert set(committed_offsets(serve_config.kafka, shadow_group, [(TOPIC, 0), (TOPIC, 1)]).values()) == {None}
    with pytest.raises(SystemExit) as exited:  # nothing left to abort: a one-line error, exit code 2
        cli.main(["-c", config_path, "reindex", "--abort"])
    assert exited.value.code == 2
    wait_until(lambda: {k: o.properties["text"] for k, o in _objects(serve_config).items()} == load.latest, 60,
               "every key's latest text in the old collection")
    pipeline[2].clear()
    pipeline[2].update(load.latest)


def test_reindex_interrupted_then_resumed_under_load(pipeline, serve_config, serve_app, second_model):
    import ray
    from ray import serve

    from freshvec.cluster import cli, reindex
    from freshvec.core import collections
    from freshvec.core.store import connect

    supervisor, config_path, corpus = pipeline
    cfg, old_model = serve_config, serve_app.model
    load = Load(cfg, CORPUS, EVENTS_PER_S, QUERIES_PER_S, api_key=API_KEY)
    load.latest.update(corpus)
    load.start()
    _interrupted_in_backfill(cfg, config_path, second_model, load)

    # Finished with --resume, the stream and the searches going on.
    for h in supervisor.consumers().values():
        ray.get(h.drain_latencies.remote())
    started = time.time()
    cli.main(["-c", config_path, "reindex", "--resume"])
    finished = time.time()
    time.sleep(3)  # some events and searches after the switch
    load.stop()

    with connect(cfg.weaviate) as client:
        assert collections.target(client, COLLECTION) == f"{COLLECTION}_v2"
        assert collections.stored(client, f"{COLLECTION}_v2").model == second_model
        assert collections.stored(client, f"{COLLECTION}_v2").dim == 256
        assert not client.collections.exists(f"{COLLECTION}_v1"), "the old collection is dropped"
    assert reindex.load_state() is None
    assert "freshvec-next" not in serve.status().applications

    # Every live key holds its latest text, embedded by the new model.
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(second_model, device="cpu")
    wait_until(lambda: {k: o.properties["text"] for k, o in _objects(cfg).items()} == load.latest, 180,
               "every key's latest text in the new collection")
    objects = _objects(cfg, include_vector=True)
    keys = sorted(objects)
    got = np.array([objects[k].vector["default"] for k in keys], dtype=np.float32)
    want = reference.encode([load.latest[k] for k in keys], normalize_embeddings=True)
    cosines = (got * want).sum(axis=1) / np.linalg.norm(got, axis=1)
    assert cosines.min() >= 0.999, f"worst cosine {cosines.min():.5f} ({keys[int(cosines.argmin())]})"
    assert {o.properties["model"] for o in objects.values()} == {second_model}

    # No search failed; none after the switch was embedded by the old model or read its vectors.
    failed = [s for s in load.searches if s[1] != 200]
    assert not failed, failed[:3]
    after = [s for s in load.searches if s[0] >= finished]
    assert after and all(s[2] == second_model for s in after), after[:3]
    assert {s[2] for s in load.searches} <= {old_model, second_model}
    during = [s for s in load.searches if started <= s[0] < finished]
    assert during, "searches ran during the reindex"

    # Freshness of the live stream while the reindex ran, reported (not asserted: a test asserts no times).
    latencies = [x for h in supervisor.consumers().values() for x in ray.get(h.drain_latencies.remote())]
    if latencies:
        print(f"\nlive freshness from --resume on: p50 {np.percentile(latencies, 50):.0f} ms, "
              f"p99 {np.percentile(latencies, 99):.0f} ms, {len(latencies)} events; "
              f"{len(load.searches)} searches, {len(during)} during the resumed reindex")
