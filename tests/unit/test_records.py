"""Record classification: every malformed kind gets its own reason; tombstones delete."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from freshvec.core.records import Delete, Rejected, Upsert, latest_per_key, object_id, parse
from freshvec.core.config import EventFormat

FMT = EventFormat()


@dataclass
class Rec:
    key: bytes | None
    value: bytes | None
    topic: str = "t"
    partition: int = 0
    offset: int = 7
    timestamp: int = 1_000
    headers: list = field(default_factory=list)


def j(obj) -> bytes:
    return json.dumps(obj).encode()


def test_upsert_carries_text_metadata_and_source():
    op = parse(Rec(b"doc-1", j({"text": "hello", "metadata": {"lang": "en", "n": 2, "ok": True, "x": 1.5}})), FMT, 100)
    assert isinstance(op, Upsert)
    assert (op.key, op.text, op.metadata) == ("doc-1", "hello", {"lang": "en", "n": 2, "ok": True, "x": 1.5})
    assert (op.source.topic, op.source.offset, op.source.timestamp_ms) == ("t", 7, 1_000)


def test_null_value_is_a_tombstone():
    assert isinstance(parse(Rec(b"doc-1", None), FMT, 100), Delete)


def test_field_names_are_configurable():
    fmt = EventFormat(text_field="body", metadata_field="attrs")
    op = parse(Rec(b"k", j({"body": "hi", "attrs": {"a": "b"}})), fmt, 100)
    assert isinstance(op, Upsert) and op.text == "hi" and op.metadata == {"a": "b"}


@pytest.mark.parametrize("key, value, reason", [
    (None, j({"text": "x"}), "missing_key"),
    (b"", j({"text": "x"}), "missing_key"),
    (b"\xff\xfe", j({"text": "x"}), "key_not_utf8"),
    (b"k", b"\xff\xfe\xfd", "value_not_utf8"),
    (b"k", b"{not json", "value_not_json"),
    (b"k", b"[" * 100_000, "value_not_json"),  # nested deeper than the parser's recursion limit
    (b"k", j(["a", "list"]), "value_not_object"),
    (b"k", j({"body": "x"}), "missing_text"),
    (b"k", j({"text": None}), "missing_text"),
    (b"k", j({"text": 42}), "text_not_string"),
    (b"k", j({"text": "   "}), "empty_text"),
    (b"k", j({"text": "é" * 60}), "text_too_large"),  # 120 bytes > 100
    (b"k", j({"text": "x", "metadata": ["a"]}), "bad_metadata"),
    (b"k", j({"text": "x", "metadata": {"a": {"nested": 1}}}), "bad_metadata"),
    (b"k", j({"text": "x", "metadata": {"a": [1, 2]}}), "bad_metadata"),
    (b"k", b'{"text": "x", "metadata": {"a": NaN}}', "bad_metadata"),
    (b"k", j({"text": "x", "metadata": {f"k{i}": i for i in range(65)}}), "bad_metadata"),
])
def test_malformed_records_are_rejected_with_a_reason(key, value, reason):
    op = parse(Rec(key, value), FMT, 100)
    assert isinstance(op, Rejected)
    assert op.reason == reason, op.detail
    assert op.detail and op.value == value and op.source.offset == 7


def test_latest_per_key_keeps_the_last_operation_in_order():
    def up(key, text):
        return parse(Rec(key.encode(), j({"text": text})), FMT, 100)

    ops = [up("a", "1"), up("b", "1"), up("a", "2"), parse(Rec(b"b", None), FMT, 100), up("c", "1")]
    latest = latest_per_key(ops)
    assert [(op.key, type(op).__name__, getattr(op, "text", None)) for op in latest] == [
        ("a", "Upsert", "2"), ("b", "Delete", None), ("c", "Upsert", "1")]


def test_object_id_is_deterministic_per_topic_and_key():
    assert object_id("t", "k") == object_id("t", "k")
    assert object_id("t", "k") != object_id("u", "k") != object_id("t", "l")


@pytest.mark.parametrize("value, reason, says", [
    (b'{"text": "\\ud800 lone surrogate"}', "invalid_text", "U+D800 at character 0"),
    (b'{"text": "ok \\udfff"}', "invalid_text", "U+DFFF at character 3"),
    (b'{"text": "ok", "metadata": {"\\ud800": "v"}}', "bad_metadata", "not valid Unicode"),
    (b'{"text": "ok", "metadata": {"k": "v \\udc00"}}', "bad_metadata", "not valid Unicode"),
    (b'{"text": "ok", "metadata": {"n": ' + b"9" * 5000 + b"}}", "value_not_json", "digits"),
])
def test_values_nothing_downstream_can_process_are_rejected_when_parsed(value, reason, says):
    op = parse(Rec(b"k", value), FMT, 100_000)
    assert isinstance(op, Rejected) and op.reason == reason and op.step == "parse", op
    assert says in op.detail
    op.detail.encode("utf-8")  # the DLQ header: the detail itself must be encodable


def test_a_surrogate_pair_escape_is_one_valid_character():
    op = parse(Rec(b"k", b'{"text": "rocket \\ud83d\\ude80"}'), FMT, 100)
    assert isinstance(op, Upsert) and op.text == "rocket \U0001F680"


def test_nul_and_control_characters_are_valid_text():
    op = parse(Rec(b"k", j({"text": "nul \x00 bell \x07 inside"})), FMT, 100)
    assert isinstance(op, Upsert) and "\x00" in op.text
