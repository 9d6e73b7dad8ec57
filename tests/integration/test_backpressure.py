"""Backpressure: while Weaviate is down, events keep arriving, far more bytes of them than the memory
bound; the consumers pause instead of buffering (their memory stays within the bound, what they hold
stays within what a session may hold, Kafka keeps the backlog), and everything lands after recovery."""

from __future__ import annotations

import time

import pytest

from tests.integration.conftest import wait_until
from tests.integration.test_ingestion import Churn, _assert_exact

pytestmark = pytest.mark.timeout(600)

RSS_GROWTH_BOUND_MB = 100  # the batches a session holds plus librdkafka's 1 MiB prefetch, with room for the allocator
PRODUCED_MB = 200  # during the outage: twice the bound, so buffering it in memory would fail
EVENT_BYTES = 100_000
# A session holds at most three batches: one being written, one queued, one the reader prepared and
# waits to hand over (actors/session.py).
HELD_BATCHES = 3


def test_weaviate_outage_pauses_consumers_within_a_memory_bound(make_env, weaviate_server):
    env = make_env(partitions=2)
    env.send_doc("warm-up", "before the outage")
    env.flush()
    wait_until(lambda: "warm-up" in env.texts_by_key(), 60, "the warm-up document")
    baseline = {s.partition: s.rss_mb for s in env.stats()}

    weaviate_server.stop()
    events = PRODUCED_MB * 1_000_000 // EVENT_BYTES
    churn = Churn(env, keys=40, events=events, rate=10_000, seed=3, ballast_bytes=EVENT_BYTES).start()
    peak, held, lag_seen, states = dict(baseline), 0, 0, set()

    def look() -> None:
        nonlocal held, lag_seen
        for s in env.stats():
            peak[s.partition] = max(peak[s.partition], s.rss_mb)
            lag_seen = max(lag_seen, s.lag or 0)
            if s.position is not None and s.committed is not None:
                held = max(held, s.position - s.committed)
            states.add(s.state)

    deadline = time.monotonic() + 240
    while churn.thread.is_alive() and time.monotonic() < deadline:
        look()
        time.sleep(1)
    for _ in range(5):  # the last events are in the log now: a consumer that read ahead would read them
        look()
        time.sleep(1)
    weaviate_server.start()
    churn.join()

    assert "retrying" in states  # paused on the outage, not skipping
    assert lag_seen > events // 3  # the backlog stayed in Kafka (the larger partition has half of it)
    growth = {p: peak[p] - baseline[p] for p in baseline}
    batch = env.cfg.pipeline.max_batch_records
    print(f"produced {events} events of {EVENT_BYTES} bytes during the outage; consumer RSS baseline {baseline} MB, "
          f"growth {growth} MB; at most {held} records read and not committed (bound {HELD_BATCHES * batch})")
    assert max(growth.values()) < RSS_GROWTH_BOUND_MB, growth
    assert held <= HELD_BATCHES * batch, held
    churn.state["warm-up"] = "before the outage"
    _assert_exact(env, churn, timeout=240)
    wait_until(lambda: all(s.lag == 0 for s in env.stats()), 30, "lag back to 0")
