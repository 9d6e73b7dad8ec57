"""Hostile input: malformed and extreme records each land in the DLQ with their reason, or are
ingested correctly; the partition and the pipeline keep running."""

from __future__ import annotations

import json

import pytest

from cluster.config import ConfigError, parse_config
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

    env = make_env(partitions=3)
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
    assert int(dict(ten_mb.headers)["value.truncated_from"]) > TEN_MB  # too big for the DLQ: cut, and said so

    # Still running: a record sent after all of that flows through.
    env.send_doc("after", "sent after the hostile records")
    env.flush()
    wait_until(lambda: env.texts_by_key().get("after") == "sent after the hostile records", 60, "a later record")
    assert all(s["state"] == "running" for s in env.stats())


@pytest.mark.parametrize("data", [{"kafka": {"topics": [""]}}, {"kafka": {"topics": ["has space"]}},
                                  {"pipeline": {"dlq_topic": ""}}])
def test_bad_topic_names_in_config_are_refused(data):
    with pytest.raises(ConfigError, match="topic"):
        parse_config(data)
