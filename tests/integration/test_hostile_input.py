"""Hostile input: malformed and extreme records each land in the DLQ with their reason, or are
ingested correctly; the partition and the pipeline keep running."""

from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from freshvec.core.config import ConfigError, parse_config
from tests.integration.conftest import wait_until
from tests.integration.test_ingestion import _read_dlq

pytestmark = pytest.mark.timeout(300)

TEN_MB = 10 * 1024 * 1024

# (key, value, expected DLQ reason)
REJECTED = [
    (b"h-binary", bytes(range(256)) * 4, "value_not_utf8"),
    (b"h-bad-utf8-inside", b'{"text": "caf\xe9"}', "value_not_utf8"),
    (b"h-10mb", json.dumps({"text": "x" * TEN_MB}).encode(), "text_too_large"),
    (b"h-nested", b"[" * 200_000 + b"]" * 200_000, "value_not_json"),
    (b"h-bom", b'\xef\xbb\xbf{"text": "with a byte order mark"}', "value_not_json"),
    (b"h-empty-value", b"", "value_not_json"),
    (b"h-text-number", json.dumps({"text": 12345}).encode(), "text_not_string"),
    (b"h-text-null", json.dumps({"text": None}).encode(), "missing_text"),
    (b"h-metadata-string", json.dumps({"text": "ok", "metadata": "not an object"}).encode(), "bad_metadata"),
    (b"h-metadata-huge", json.dumps({"text": "ok", "metadata": {f"k{i}": i for i in range(5000)}}).encode(),
     "bad_metadata"),
    (None, json.dumps({"text": "no key at all"}).encode(), "missing_key"),
    (b"\xc3\x28-bad-key", json.dumps({"text": "key is not utf-8"}).encode(), "key_not_utf8"),
]

# Extreme but valid: ingested exactly.
ACCEPTED = {
    "h-control-chars": "tab\there, bell\x07, escape\x1b[31m, unit sep\x1f and a right-to-left mark\u202e.",
    "h-unicode": "Emoji 🚀🔥, CJK 漢字, Arabic مرحبا, combining e\u0301.",
    "h-at-limit": "y" * 32_768,
}


def test_hostile_records_are_dead_lettered_or_ingested_and_the_pipeline_keeps_running(make_env):
    from kafka import KafkaProducer

    # The limit of a short-text deployment: cheap to reach. Not compacted: a compacted topic refuses
    # the keyless record at the broker.
    env = make_env(partitions=3, max_text_bytes=32_768, topic_config={"cleanup.policy": "delete"})
    big = KafkaProducer(bootstrap_servers=env.cfg.kafka.bootstrap_servers, max_request_size=16 * 1024 * 1024,
                        linger_ms=0, acks=1)
    expected = {}
    for i, (key, value, _) in enumerate(REJECTED):
        big.send(env.topic, key=key, value=value, partition=0)
        big.send(env.topic, key=f"good-{i}".encode(), value=json.dumps({"text": f"good record {i}"}).encode(),
                 partition=0)
        expected[f"good-{i}"] = f"good record {i}"
    for key, text in ACCEPTED.items():
        big.send(env.topic, key=key.encode(), value=json.dumps({"text": text}).encode(), partition=0)
        expected[key] = text
    for n in range(5):  # the same key several times in a row: the last one wins
        big.send(env.topic, key=b"h-dup", value=json.dumps({"text": f"duplicate revision {n}"}).encode(), partition=0)
    expected["h-dup"] = "duplicate revision 4"
    big.flush()
    big.close()

    wait_until(lambda: env.texts_by_key() == expected, 120, "every valid record ingested exactly")
    dead = _read_dlq(env, len(REJECTED))
    got = {r.key: dict(r.headers)["reason"].decode() for r in dead}
    assert got == {key: reason for key, _, reason in REJECTED}
    ten_mb = next(r for r in dead if r.key == b"h-10mb")
    assert len(ten_mb.value) > TEN_MB and "value.truncated_from" not in dict(ten_mb.headers)  # kept whole

    # Still running: a record sent after all of that flows through.
    env.send_doc("after", "sent after the hostile records")
    env.flush()
    wait_until(lambda: env.texts_by_key().get("after") == "sent after the hostile records", 60, "a later record")
    assert all(s.state == "running" for s in env.stats())


@pytest.mark.parametrize("data", [{"kafka": {"topics": [""]}}, {"kafka": {"topics": ["has space"]}},
                                  {"pipeline": {"dlq_topic": ""}}])
def test_bad_topic_names_in_config_are_refused(data):
    with pytest.raises(ConfigError, match="topic"):
        parse_config(data)


def _dlq_by_key(env, expected: int, timeout: float = 60) -> dict[bytes, dict[str, str]]:
    return {r.key: {k: v.decode() for k, v in r.headers} for r in _read_dlq(env, expected, timeout)}


def test_a_lone_surrogate_goes_to_the_dlq_and_its_partition_moves_on(make_env):
    """The reported case: three records of one key; the first can never be encoded."""
    env = make_env(partitions=2)
    for value in (b'{"text": "\\ud800 lone surrogate"}', b'{"text": "nul \\u0000 inside"}',
                  b'{"text": "follower after poison"}'):
        env.send(b"poisoned", value)
    env.flush()
    wait_until(lambda: env.texts_by_key().get("poisoned") == "follower after poison", 60, "the follower")
    dead = _dlq_by_key(env, 1)
    assert dead[b"poisoned"]["reason"] == "invalid_text" and dead[b"poisoned"]["step"] == "parse"
    assert "U+D800" in dead[b"poisoned"]["detail"]
    assert all(s.state == "running" and s.stuck is None for s in env.stats())


def _strict_collection(name: str, info) -> None:
    """A collection created beforehand by "someone else" behind alias `name`, with doc_id of type UUID:
    Weaviate then refuses, object by object, every document whose key is not a UUID."""
    from weaviate.classes.config import Configure, DataType, Property

    from freshvec.core.store import connect
    from freshvec.core.config import parse_config

    with connect(parse_config({"weaviate": {"collection": name}}).weaviate) as client:
        client.collections.create(
            f"{name}_v1", vector_config=Configure.Vectors.self_provided(),
            description=json.dumps({"dim": info.dim, "freshvec_model": info.model}, sort_keys=True),
            properties=[Property(name="doc_id", data_type=DataType.UUID)] + [
                Property(name=n, data_type=DataType.TEXT) for n in ("text", "metadata", "source_topic", "model")] + [
                Property(name="metadata_terms", data_type=DataType.TEXT_ARRAY)] + [
                Property(name=n, data_type=DataType.INT)
                for n in ("source_partition", "source_offset", "event_ts_ms", "ingest_ts_ms")])
        client.alias.create(alias_name=name, target_collection=f"{name}_v1")


def test_objects_weaviate_refuses_are_isolated_and_the_rest_of_the_batch_lands(serve_app, make_env):
    import uuid as uuidlib

    name = f"ItStrict{uuidlib.uuid4().hex[:8]}"
    _strict_collection(name, serve_app)
    env = make_env(partitions=1, collection=name, poison_attempts=2)
    good = {str(uuidlib.uuid4()): f"document {i} with a UUID key" for i in range(20)}
    bad = [f"not-a-uuid-{i}" for i in range(3)]
    keys = list(good)
    for i, key in enumerate(bad):  # spread through the batch
        keys.insert(5 + 6 * i, key)
    for key in keys:
        env.send_doc(key, good.get(key, f"{key}: Weaviate refuses this one"))
    env.flush()
    # doc_id is a UUID property here, which the client reads back as uuid.UUID
    wait_until(lambda: {str(k): v for k, v in env.texts_by_key().items()} == good, 90, "every UUID-keyed document")
    dead = _dlq_by_key(env, len(bad))
    assert set(dead) == {k.encode() for k in bad}
    for headers in dead.values():
        assert (headers["reason"], headers["step"]) == ("write_rejected", "write")
        assert "invalid uuid property 'doc_id'" in headers["detail"]
    stats = env.stats()
    assert sum(s.dead_lettered for s in stats) == len(bad) and all(s.stuck is None for s in stats)


def test_weaviate_away_is_retried_never_dead_lettered_and_the_stuck_partition_shows(make_env, weaviate_server):
    from freshvec.cluster import status

    env = make_env(partitions=1)
    env.send_doc("before", "written before the outage")
    env.flush()
    wait_until(lambda: env.texts_by_key() == {"before": "written before the outage"}, 60, "the first document")
    wait_until(lambda: env.stats()[0].committed == 1, 30, "the first document committed")
    weaviate_server.stop()
    try:
        env.send_doc("during", "sent while Weaviate is away")
        env.flush()
        stuck = wait_until(lambda: env.stats()[0].stuck, 90, "the consumer to report it is stuck")
        assert stuck.offset == 1 and stuck.attempts >= 1 and "weaviate" in stuck.error.lower()
        report = status.collect(env.cfg)
        assert report["totals"]["stuck"] == 1
        assert f"stuck: consumer:local:{env.topic}:0 at offset 1" in status.render(report)
    finally:
        weaviate_server.start()
    wait_until(lambda: env.texts_by_key().get("during") == "sent while Weaviate is away", 120, "the held document")
    wait_until(lambda: env.stats()[0].stuck is None, 30, "the stuck report to clear")
    assert env.stats()[0].dead_lettered == 0


# --- property-based: generated hostile events through the real pipeline and every HTTP route ----------

def _s(text: str) -> bytes:
    """A JSON string literal."""
    return json.dumps(text).encode()


LONE = st.one_of(st.integers(0xDC00, 0xDFFF).map(lambda c: f"\\u{c:04x}"),  # a low surrogate alone
                 st.integers(0xD800, 0xDBFF).map(lambda c: f"\\u{c:04x}!"))  # a high one without its pair
WORDS = st.text(st.characters(codec="utf-8"), max_size=40)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | WORDS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(WORDS, inner, max_size=4), max_leaves=12)


@st.composite
def hostile_event(draw) -> tuple[bytes, bytes, bytes | None, str | None]:
    """(record value, its text as a JSON fragment, its metadata as a JSON fragment, the DLQ reason it
    must get, or None when landing is also right)."""
    kind = draw(st.sampled_from(["surrogate_text", "surrogate_metadata", "control_text", "invalid_utf8",
                                 "nested", "huge", "metadata_shape", "metadata_keys", "numbers", "any_json"]))
    text, metadata, reason = _s(draw(WORDS) + "x"), None, None
    if kind == "surrogate_text":
        text, reason = b'"' + (draw(WORDS.map(lambda w: _s(w)[1:-1].decode())) + draw(LONE)).encode() + b'"', "invalid_text"
    elif kind == "surrogate_metadata":
        metadata, reason = b'{"k": "' + draw(LONE).encode() + b'"}', "bad_metadata"
    elif kind == "control_text":
        text = _s(draw(st.text(st.characters(max_codepoint=0x1F) | st.sampled_from("\x7f\u2028\u202e\ufeff"),
                               min_size=1, max_size=30)))
    elif kind == "invalid_utf8":
        return b'{"text": "' + draw(st.binary(max_size=20)) + b'\xff\xfe"}', b'"\xff"', None, "value_not_utf8"
    elif kind == "nested":
        depth = draw(st.integers(1, 100_000))
        return (b'{"text": "ok", "metadata": ' + b"[" * depth + b"]" * depth + b"}", _s("ok"),
                b"[" * depth + b"]" * depth, "bad_metadata" if depth < 500 else None)  # deeper: maybe not JSON
    elif kind == "huge":
        text, reason = _s("h" * draw(st.integers(32_769, 40_000))), "text_too_large"
    elif kind == "metadata_shape":
        metadata = json.dumps(draw(JSON_VALUES)).encode()
    elif kind == "metadata_keys":
        metadata = json.dumps(draw(st.dictionaries(st.text(max_size=300), st.integers() | WORDS, max_size=70))).encode()
    elif kind == "numbers":
        metadata = b'{"n": ' + draw(st.sampled_from([b"1e400", b"-1e400", b"NaN", b"Infinity", b"-0.0",
                                                     b"9" * 400, b"1" * 5000, b"1e-400"])) + b"}"
    elif kind == "any_json":
        return json.dumps(draw(JSON_VALUES)).encode(), text, None, None
    value = b'{"text": ' + text + (b', "metadata": ' + metadata if metadata is not None else b"") + b"}"
    return value, text, metadata, reason


FOLLOWER = "the follower of key {}"


@settings(max_examples=3, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(events=st.lists(hostile_event(), min_size=12, max_size=12),
       key_stems=st.lists(st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30),
                          min_size=12, max_size=12))
def test_generated_hostile_records_land_or_are_dead_lettered_and_their_followers_land(hostile_env, events, key_stems):
    env = hostile_env
    run = uuid.uuid4().hex[:6]
    keys = [f"{stem}#{run}-{i}" for i, stem in enumerate(key_stems)]
    for i, (key, (value, _, _, _)) in enumerate(zip(keys, events)):
        env.big.send(env.topic, key=key.encode(), value=value)
        env.big.send(env.topic, key=key.encode(), value=json.dumps({"text": FOLLOWER.format(i)}).encode())
    env.big.flush()
    wait_until(lambda: all(env.texts_by_key().get(k) == FOLLOWER.format(i) for i, k in enumerate(keys)), 120,
               "every follower to land")
    must = {k.encode(): reason for k, (_, _, _, reason) in zip(keys, events) if reason}
    dead = {key: headers for key, headers in _dlq_headers(env, timeout=5).items() if f"#{run}-".encode() in key}
    for key, reason in must.items():
        assert key in dead and dead[key]["reason"] == reason, (key, reason, dead.get(key))
    for key, headers in dead.items():  # each with its reason, all caught when parsed
        assert headers["reason"] and headers["detail"] and headers["step"] == "parse", (key, headers)
    assert all(s.stuck is None and s.state == "running" for s in env.stats())


def _dlq_headers(env, timeout: float) -> dict[bytes, dict[str, str]]:
    """Every DLQ record so far (read until quiet for `timeout` s), by key."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(env.cfg.pipeline.dlq_topic, bootstrap_servers=env.cfg.kafka.bootstrap_servers,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=int(timeout * 1000))
    try:
        return {r.key: {k: v.decode() for k, v in r.headers} for r in consumer}
    finally:
        consumer.close()


@pytest.fixture
def hostile_env(make_env):
    """One pipeline for all generated examples (each example uses keys of its own)."""
    from kafka import KafkaProducer

    env = make_env(partitions=2, max_text_bytes=32_768)  # "huge" examples cross it cheaply
    env.big = KafkaProducer(bootstrap_servers=env.cfg.kafka.bootstrap_servers, max_request_size=16 * 1024 * 1024,
                            linger_ms=5, acks=1)
    yield env
    env.big.close()


ROUTES = ["/embed", "/v1/embeddings", "/search", "/healthz", "/readyz", "/openapi.json"]


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(event=hostile_event())
def test_generated_hostile_values_never_get_a_5xx_on_any_route(serve_app, event):
    import httpx

    from tests.integration.conftest import API_KEY, SERVE_PORT

    value, text, metadata, _ = event
    bodies = {
        "/embed": [value, b'{"texts": [' + text + b"]}"],
        "/v1/embeddings": [value, b'{"input": ' + text + b', "model": ' + text + b"}",
                           b'{"input": [' + text + b", " + text + b"]}"],
        "/search": [value, b'{"query": ' + text + b', "k": 3' + (b', "filters": ' + metadata if metadata else b"") + b"}"],
    }
    with httpx.Client(base_url=f"http://127.0.0.1:{SERVE_PORT}", timeout=60,
                      headers={"authorization": f"Bearer {API_KEY}", "content-type": "application/json"}) as http:
        for route in ROUTES:
            for body in bodies.get(route, [value]):
                response = http.post(route, content=body) if route in bodies else http.get(route)
                assert response.status_code < 500 or (route == "/readyz" and response.status_code == 503), (
                    route, body[:200], response.status_code, response.text[:300])
                if response.status_code >= 400 and route in bodies:
                    assert response.json(), "a 4xx says what is wrong"


def test_a_text_the_model_refuses_fails_only_its_own_request(serve_app):
    """The replica batches requests of all consumers: one that the model refuses (here a lone surrogate,
    which the consumers' parsing stops before it gets there) must not fail the others batched with it."""
    from ray import serve

    from freshvec.actors.batch import is_refusal
    from freshvec.core.identity import APP_NAME, DEPLOYMENT_NAME

    handle = serve.get_deployment_handle(DEPLOYMENT_NAME, app_name=APP_NAME)
    calls = [handle.embed.remote([f"a good text, number {i}"]) for i in range(6)]
    bad = handle.embed.remote(["fine", "\ud800 lone surrogate"])
    calls += [handle.embed.remote([f"another good text, number {i}"]) for i in range(6)]
    with pytest.raises(Exception) as refused:
        bad.result(timeout_s=60)
    assert is_refusal(refused.value), refused.value  # the consumer isolates it, it does not retry forever
    assert all(c.result(timeout_s=60).shape == (1, serve_app.dim) for c in calls)
