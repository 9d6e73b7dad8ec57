"""The consumer's parts, each alone: no Kafka, Ray or Weaviate. The real clients are replaced by
fakes that answer like confluent-kafka's Consumer and Producer (same methods, same error objects)."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import KafkaError, KafkaException

from freshvec.actors.dead_letters import DeadLetterWriter
from freshvec.actors.partition import PartitionReader
from freshvec.actors.retries import RetryPolicy
from freshvec.actors.session import Gatherer, TwoStageSession
from freshvec.core.config import parse_config
from freshvec.core.errors import (ConfigError, EmbedRejected, FreshvecError, KafkaRefused, KafkaUnavailableError,
                                  SinkError, TransientError)
from freshvec.core.kafka import kafka_errors
from freshvec.core.records import Rejected, Source

KAFKA = parse_config({}).kafka


class Message:
    def __init__(self, offset: int, value: bytes | None = b'{"text": "t"}', error=None):
        self._offset, self._value, self._error = offset, value, error

    def error(self): return self._error
    def topic(self): return "docs"
    def partition(self): return 0
    def offset(self): return self._offset
    def timestamp(self): return (1, 1000 + self._offset)
    def key(self): return b"k%d" % self._offset
    def value(self): return self._value
    def headers(self): return None


class FakeConsumer:
    def __init__(self, settings, committed=-1001, messages=(), watermarks=(0, 10)):
        self.settings, self._committed, self.messages = settings, committed, list(messages)
        self.assigned, self.commits, self.watermarks = None, [], watermarks

    def committed(self, tps, timeout):
        (tp,) = tps
        tp.offset = self._committed
        return [tp]

    def assign(self, tps): self.assigned = [(tp.topic, tp.partition, tp.offset) for tp in tps]

    def poll(self, timeout):
        return self.messages.pop(0) if self.messages else None

    def consume(self, n, timeout):
        out, self.messages = self.messages[:n], self.messages[n:]
        return out

    def commit(self, offsets, asynchronous):
        assert asynchronous is False
        self.commits.append(offsets[0].offset)

    def get_watermark_offsets(self, tp, timeout, cached=False):
        if isinstance(self.watermarks, Exception):
            raise self.watermarks
        return self.watermarks

    def close(self): pass


def reader(**fake) -> tuple[PartitionReader, FakeConsumer]:
    made = {}

    def client(settings):
        made["c"] = FakeConsumer(settings, **fake)
        return made["c"]

    return PartitionReader(KAFKA, "docs", 0, client_rack="rack-a", client=client), made["c"]


# --- the partition's Kafka I/O ---------------------------------------------------------
def test_reader_assigns_at_the_committed_offset_or_the_beginning():
    from confluent_kafka import OFFSET_BEGINNING

    r, fake = reader(committed=42)
    assert r.start() == 42 and fake.assigned == [("docs", 0, 42)]
    r, fake = reader()  # nothing committed yet
    assert r.start() is None and fake.assigned == [("docs", 0, OFFSET_BEGINNING)]
    assert fake.settings["enable.auto.commit"] is False and fake.settings["client.rack"] == "rack-a"


def test_reader_batches_records_and_commits_what_it_is_told():
    r, fake = reader(messages=[Message(i) for i in range(5)])
    assert [rec.offset for rec in r.next_batch(3, 0)] == [0, 1, 2]
    assert [rec.offset for rec in r.next_batch(3, 0)] == [3, 4]
    assert r.next_batch(3, 0) == []
    r.commit(5)
    assert fake.commits == [5]


def test_a_partition_error_in_a_batch_is_retriable_not_a_record():
    r, _ = reader(messages=[Message(0), Message(1, error=KafkaError(KafkaError._TRANSPORT))])
    with pytest.raises(KafkaUnavailableError, match="poll"):
        r.next_batch(5, 0)


def test_a_reader_behind_the_log_end_that_reads_nothing_for_a_while_is_a_stall(monkeypatch):
    from freshvec.actors import partition

    clock = [100.0]
    monkeypatch.setattr(partition.time, "monotonic", lambda: clock[0])

    def idle_polls(r, seconds: float) -> None:
        for _ in range(int(seconds)):
            clock[0] += 1
            assert r.next_batch(3, 0) == []

    r, fake = reader(committed=5, watermarks=(0, 8))  # offsets 5-7 are in the log, never delivered
    r.start()
    idle_polls(r, partition.FETCH_STALL_S)
    with pytest.raises(KafkaUnavailableError, match=r"fetch stalled.*up to offset 7, nothing read past 5"):
        idle_polls(r, 2)

    r, fake = reader(committed=8, watermarks=(0, 8))  # caught up: quiet, not stalled
    r.start()
    idle_polls(r, 3 * partition.FETCH_STALL_S)
    # A client that cannot ask the broker for long is stuck too (or the broker is away, when a new
    # client costs nothing): it starts over as well.
    fake.watermarks = KafkaException(KafkaError(KafkaError._TRANSPORT))
    idle_polls(r, partition.FETCH_STALL_S)
    with pytest.raises(KafkaUnavailableError, match=r"fetch stalled.*cannot ask for the log end"):
        idle_polls(r, 2)

    r, fake = reader(committed=5, watermarks=(0, 8))  # a record read starts the clock again
    r.start()
    idle_polls(r, partition.FETCH_STALL_S - 2)
    fake.messages = [Message(5)]
    assert [rec.offset for rec in r.next_batch(3, 0)] == [5]
    idle_polls(r, partition.FETCH_STALL_S - 1)


def test_lag_counts_from_the_commit_and_is_unknown_when_the_broker_is_away():
    r, fake = reader(watermarks=(3, 10))
    assert r.lag(7) == 3 and r.lag(None) == 7  # nothing committed: the whole log
    fake.watermarks = KafkaException(KafkaError(KafkaError._TRANSPORT))
    assert r.lag(7) is None


# --- Kafka's errors, translated once -------------------------------------------------------
@pytest.mark.parametrize("code, kind", [
    (KafkaError._TRANSPORT, KafkaUnavailableError), (KafkaError._ALL_BROKERS_DOWN, KafkaUnavailableError),
    (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaUnavailableError),
    (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaRefused), (KafkaError.SASL_AUTHENTICATION_FAILED, KafkaRefused),
    (KafkaError._INVALID_ARG, ConfigError)])
def test_kafka_errors_become_the_projects(code, kind):
    with pytest.raises(kind) as raised:
        with kafka_errors("commit", ["b:9092"]):
            raise KafkaException(KafkaError(code))
    assert raised.value.retriable == (kind is KafkaUnavailableError) and "b:9092" in str(raised.value)


def test_a_setting_librdkafka_refuses_is_a_config_error_not_a_retry():
    bad = parse_config({"kafka": {"consumer": {"fetch_max_bytes": -5}}}).kafka
    with pytest.raises(ConfigError, match="fetch.max.bytes"):
        PartitionReader(bad, "docs", 0)


# --- the dead-letter writer ---------------------------------------------------------------
class FakeProducer:
    def __init__(self, settings, fail: KafkaError | None = None, too_large_over: int | None = None):
        self.sent, self.fail, self.too_large_over, self._callbacks = [], fail, too_large_over, []

    def produce(self, topic, key, value, headers, on_delivery):
        if self.too_large_over is not None and len(value or b"") > self.too_large_over:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        self.sent.append((topic, key, value, dict(headers)))
        self._callbacks.append(on_delivery)

    def flush(self, timeout):
        for cb in self._callbacks:
            cb(self.fail, None)
        self._callbacks = []
        return 0


def rejected(value: bytes = b"not json", reason: str = "value_not_json") -> Rejected:
    return Rejected(reason, "the value is not JSON: bad \udcff byte", Source("docs", 2, 17, 1000), b"k", value, [],
                    "parse")


def test_dead_letters_carry_reason_step_detail_and_source():
    made = {}
    writer = DeadLetterWriter(KAFKA, "docs.dlq", client=lambda s: made.setdefault("p", FakeProducer(s)))
    writer.send([rejected()])
    ((topic, key, value, headers),) = made["p"].sent
    assert (topic, key, value) == ("docs.dlq", b"k", b"not json")
    assert headers["reason"] == b"value_not_json" and headers["step"] == b"parse"
    assert headers["detail"] == b"the value is not JSON: bad \\udcff byte"  # any text, still bytes
    assert (headers["source.topic"], headers["source.partition"], headers["source.offset"]) == (b"docs", b"2", b"17")


def test_a_value_too_large_for_the_dlq_is_cut_and_says_so():
    made = {}
    writer = DeadLetterWriter(KAFKA, "docs.dlq", client=lambda s: made.setdefault("p", FakeProducer(s, too_large_over=70_000)))
    writer.send([rejected(value=b"x" * 100_000)])
    ((_, _, value, headers),) = made["p"].sent
    assert len(value) == 65536 and headers["value.truncated_from"] == b"100000"


def test_an_unacknowledged_dead_letter_is_retriable():
    writer = DeadLetterWriter(KAFKA, "docs.dlq", client=lambda s: FakeProducer(s, fail=KafkaError(KafkaError._MSG_TIMED_OUT)))
    with pytest.raises(KafkaUnavailableError, match="DLQ"):
        writer.send([rejected()])


# --- the retry policy ---------------------------------------------------------------------
def flaky(errors: list[BaseException], result="ok"):
    calls = []

    def fn():
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return result
    return fn, calls


def policy(**kw) -> tuple[RetryPolicy, list]:
    seen = []
    return RetryPolicy(threading.Event(), 0.01, 3, on_retry=lambda exc, target: seen.append((type(exc), target)),
                       **kw), seen


def test_transient_errors_are_retried_until_they_pass():
    recovered = []
    p, seen = policy(on_recovered=lambda: recovered.append(1))
    fn, calls = flaky([SinkError("away"), SinkError("away")])
    assert p.call(fn, target="weaviate") == "ok" and len(calls) == 3
    assert seen == [(SinkError, "weaviate")] * 2 and recovered == [1]


def test_errors_no_wait_can_fix_are_raised_at_once():
    p, seen = policy()
    for error in (ConfigError("bad"), KafkaRefused("no"), ValueError("bug")):
        fn, calls = flaky([error])
        with pytest.raises(type(error)):
            p.call(fn, target="kafka")
        assert len(calls) == 1
    assert seen == []


def test_a_refusal_gets_poison_attempts_tries_then_is_the_records():
    p, seen = policy()
    fn, calls = flaky([EmbedRejected("no")] * 5)
    with pytest.raises(EmbedRejected):
        p.attempts(fn, target="serve")
    assert len(calls) == 3 and len(seen) == 2
    fn, calls = flaky([EmbedRejected("once")])
    assert p.attempts(fn, target="serve") == "ok" and len(calls) == 2


def test_stopping_ends_the_retries_with_the_last_error():
    stopped = threading.Event()
    p = RetryPolicy(stopped, 0.01, 3, on_retry=lambda exc, target: stopped.set())
    fn, calls = flaky([SinkError("away")] * 100)
    with pytest.raises(SinkError):
        p.call(fn, target="weaviate")
    assert len(calls) == 1  # no call after the stop: a stopped session's writer must not write


def test_a_stopped_policy_makes_no_call_at_all():
    stopped = threading.Event()
    stopped.set()
    fn, calls = flaky([])
    with pytest.raises(TransientError, match="stopped"):
        RetryPolicy(stopped, 0.01, 3).call(fn, target="weaviate")
    assert calls == []


def test_a_call_given_a_time_limit_gives_up_with_the_last_error_so_the_caller_starts_over():
    p, seen = policy()
    fn, calls = flaky([KafkaUnavailableError("waiting for coordinator")] * 1000)
    with pytest.raises(KafkaUnavailableError, match="coordinator"):
        p.call(fn, target="kafka", within_s=0.2)
    assert 2 <= len(calls) < 1000 and seen[0] == (KafkaUnavailableError, "kafka")
    fn, calls = flaky([KafkaUnavailableError("away")] * 2)
    assert p.call(fn, target="kafka", within_s=5) == "ok" and len(calls) == 3


# --- the two-stage session ------------------------------------------------------------------
def test_the_writer_finishes_batches_in_order_and_owns_the_acked_offset():
    written, stopped = [], threading.Event()

    def finish(batch):
        time.sleep(0.01)
        written.append(batch)
        return batch + 1

    session = TwoStageSession(finish, "t")
    session.start()
    for batch in range(10):
        assert session.hand_over(batch, stopped)
    deadline = time.monotonic() + 5
    while not session.idle and time.monotonic() < deadline:
        time.sleep(0.01)
    session.close()
    assert written == list(range(10)) and session.acked == 10 and session.idle


def test_a_writer_failure_is_raised_as_it_was_in_the_reader():
    class Refused(FreshvecError):
        pass

    stopped = threading.Event()
    session = TwoStageSession(lambda batch: (_ for _ in ()).throw(Refused("weaviate said no")), "t")
    session.start()
    session.hand_over(1, stopped)
    deadline = time.monotonic() + 5
    with pytest.raises(Refused, match="weaviate said no"):
        while time.monotonic() < deadline:
            session.raise_if_failed()
            time.sleep(0.01)
    assert session.acked is None  # nothing acknowledged: nothing will be committed
    session.close()


def test_work_the_writer_deferred_moves_the_acked_offset_when_it_idles_and_its_failure_is_raised():
    class Away(FreshvecError):
        pass

    stopped, deferred = threading.Event(), {"done": 0}

    def finish(batch):  # holds the commit back to the batch's start until `idle` has done its part
        deferred["to"] = batch + 1
        return batch

    def idle():
        if "to" not in deferred:
            return None
        if deferred["done"]:
            raise Away("weaviate away")
        deferred["done"] += 1
        return deferred.get("to")

    session = TwoStageSession(finish, "t", idle=idle)
    session.start()
    session.hand_over(7, stopped)
    deadline = time.monotonic() + 5
    with pytest.raises(Away):
        while time.monotonic() < deadline:
            session.raise_if_failed()
            time.sleep(0.01)
    assert session.acked == 8
    session.close()


def test_a_busy_writer_holds_the_reader_and_a_stop_drops_the_batch():
    release, stopped, waited = threading.Event(), threading.Event(), []
    session = TwoStageSession(lambda batch: release.wait(5) and batch + 1, "t")
    session.start()
    assert session.hand_over(1, stopped)  # being written
    assert session.hand_over(2, stopped)  # queued
    threading.Timer(0.3, stopped.set).start()
    assert session.hand_over(3, stopped, waiting=lambda: waited.append(1)) is False
    assert waited and not session.idle
    release.set()
    session.close()


def test_close_returns_only_once_the_writer_has_exited_however_long_its_batch_takes():
    # A write of a closed session landing after the next session rewrote its keys would put older text back.
    release, stopped, finished = threading.Event(), threading.Event(), []
    session = TwoStageSession(lambda batch: release.wait(5) and finished.append(batch) or batch + 1, "t")
    session.start()
    assert session.hand_over(1, stopped)
    time.sleep(0.05)  # the writer holds batch 1
    threading.Timer(0.5, release.set).start()
    session.close(log_every_s=0.1)  # longer than one wait: it keeps waiting, and logs that it does
    assert finished == [1] and session.acked == 2


# --- batches that adapt to the load -----------------------------------------------------------------
class Arrivals:
    """PartitionReader.next_batch over records that 'arrive' when the test says so."""

    def __init__(self):
        self.queued, self.calls = [], []

    def arrive(self, *offsets: int) -> None:
        self.queued += offsets

    def __call__(self, max_records: int, max_wait_ms: int, first_wait_s: float = 0.1) -> list:
        self.calls.append(first_wait_s)
        taken, self.queued = self.queued[:max_records], self.queued[max_records:]
        return taken


def test_a_lone_record_leaves_at_once_and_records_behind_a_waiting_batch_gather_into_one():
    writing, release, written, stopped = threading.Event(), threading.Event(), [], threading.Event()

    def finish(batch):
        writing.set()
        release.wait(5)
        written.append(batch)
        return batch[-1] + 1

    session = TwoStageSession(finish, "t")
    session.start()
    gather, kafka = Gatherer(session, max_records=3, max_wait_ms=0), Arrivals()
    assert gather.step(kafka) is None and gather.quiet  # nothing there
    kafka.arrive(0)
    assert gather.step(kafka) == [0]  # the writer is idle: a lone record goes at once
    assert session.hand_over([0], stopped) and writing.wait(5)
    kafka.arrive(1)
    assert gather.step(kafka) == [1]  # the writer is only writing: this one's embedding can overlap it
    assert session.hand_over([1], stopped)
    for offset in (2, 3, 4, 5):  # [1] waits for the writer: these gather, at most 3
        kafka.arrive(offset)
        assert gather.step(kafka) is None
    assert gather.pending == [2, 3, 4] and gather.full and not gather.quiet
    assert kafka.calls[-2:] == [0, 0]  # while gathering, Kafka is not waited on (and not read when full)
    release.set()  # the writer takes [1]: the gathered batch leaves at once
    deadline = time.monotonic() + 5
    while (batch := gather.step(kafka)) is None and time.monotonic() < deadline:
        pass
    assert batch == [2, 3, 4] and kafka.queued == [5]
    session.close()
    assert written[:2] == [[0], [1]]
