"""Backpressure: during a 60 s Weaviate outage with events still arriving, consumers pause instead of
buffering (their memory stays within a stated bound, Kafka holds the backlog), and everything is
ingested after recovery."""

from __future__ import annotations

import time

import pytest

from tests.integration.conftest import wait_until
from tests.integration.test_ingestion import Churn, _assert_exact

pytestmark = pytest.mark.timeout(600)

OUTAGE_S = 60
RSS_GROWTH_BOUND_MB = 100  # one micro-batch plus librdkafka's 1 MiB prefetch, with room for the allocator


def test_weaviate_outage_pauses_consumers_within_a_memory_bound(make_env, weaviate_server):
    env = make_env(partitions=2)
    env.send_doc("warm-up", "before the outage")
    env.flush()
    wait_until(lambda: "warm-up" in env.texts_by_key(), 60, "the warm-up document")
    baseline = {s.partition: s.rss_mb for s in env.stats()}

    weaviate_server.stop()
    churn = Churn(env, keys=300, events=int(OUTAGE_S * 25), rate=25, seed=3).start()
    peak = dict(baseline)
    lag_seen = 0
    deadline = time.monotonic() + OUTAGE_S
    while time.monotonic() < deadline:
        for s in env.stats():
            peak[s.partition] = max(peak[s.partition], s.rss_mb)
            lag_seen = max(lag_seen, s.lag or 0)
        time.sleep(2)
    states = {s.state for s in env.stats()}
    weaviate_server.start()
    churn.join()

    assert "retrying" in states  # paused on the outage, not skipping
    assert lag_seen > 100  # the backlog stayed in Kafka
    growth = {p: peak[p] - baseline[p] for p in baseline}
    print(f"consumer RSS baseline {baseline} MB, growth during the outage {growth} MB")
    assert max(growth.values()) < RSS_GROWTH_BOUND_MB, growth
    churn.state["warm-up"] = "before the outage"
    _assert_exact(env, churn, timeout=240)
    wait_until(lambda: all(s.lag == 0 for s in env.stats()), 30, "lag back to 0")
