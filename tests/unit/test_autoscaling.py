"""The backlog autoscaling policy on synthetic Serve contexts: no Ray, no Kafka."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from freshvec.core.config import parse_config
from freshvec.serve.autoscaling import CAPACITY_METRIC, BacklogPolicy, BacklogTracker, serve_autoscaling


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Reports:
    """What the consumers published: partition -> (lag, end offset), stamped with the clock's time."""

    def __init__(self, clock: Clock, partitions: int = 4):
        self.clock, self.parts, self.alive = clock, {p: (0, 0) for p in range(partitions)}, True

    def __call__(self):
        return [{"lag": lag, "end": end, "at": self.clock.now if self.alive else self.clock.now - 60}
                for lag, end in self.parts.values()]

    def advance(self, seconds: float, arrive_per_s: float, done_per_s: float) -> None:
        """Time passes: records arrive and are processed, spread over the partitions."""
        self.clock.now += seconds
        n = len(self.parts)
        for p, (lag, end) in self.parts.items():
            arrived = arrive_per_s * seconds / n
            self.parts[p] = (max(lag + arrived - done_per_s * seconds / n, 0), end + arrived)


def ctx(replicas: int = 1, ongoing: float = 0.0, capacity: float | None = 200.0, target_ongoing: float = 2.0):
    from ray.serve.config import AutoscalingConfig

    metrics = {CAPACITY_METRIC: {f"r{i}": capacity for i in range(replicas)}} if capacity is not None else {}
    config = AutoscalingConfig(min_replicas=0, max_replicas=100, target_ongoing_requests=target_ongoing)
    return SimpleNamespace(current_num_replicas=replicas, target_num_replicas=replicas, total_num_requests=ongoing,
                           config=config,
                           aggregated_metrics=metrics, policy_state={}, deployment_name="Embedder")


def policy(reports: Reports, clock: Clock, **kw) -> BacklogPolicy:
    p = BacklogPolicy(catch_up_s=30, target_utilization=0.7, default_capacity=100,
                      tracker=BacklogTracker(stale_s=5, window_s=10, read=reports, clock=clock), **kw)
    p._publish = lambda decision, ctx: None  # no Ray here
    return p


def decide(p: BacklogPolicy, c) -> int:
    p._read_at = -math.inf  # a second has passed between our calls
    target, state = p(c)
    assert isinstance(state, dict)
    return target


def test_a_rising_backlog_adds_replicas_that_requests_would_not():
    clock = Clock()
    reports = Reports(clock)
    p = policy(reports, clock)
    assert decide(p, ctx(ongoing=1)) == 1
    targets = []
    for _ in range(6):  # 600 ev/s arrive, one replica does 200
        reports.advance(1, 600, 200)
        targets.append(decide(p, ctx(ongoing=1)))
    # 600 / 0.7 / 200 = 4.3 for the input alone, more for the lag: Serve's requests policy says 1
    assert targets[-1] >= 5 and targets == sorted(targets), targets
    assert p.last.source == "backlog" and p.last.rate == pytest.approx(600, rel=0.01) and p.last.lag > 0


def test_a_drained_backlog_at_a_low_rate_comes_back_to_what_requests_ask():
    clock = Clock()
    reports = Reports(clock)
    reports.parts = {p: (3000, 10_000) for p in range(4)}  # 12,000 behind, nothing arriving
    p = policy(reports, clock)
    high = decide(p, ctx(replicas=3))
    assert high == math.ceil(12_000 / 30 / 200)  # 2: the lag alone
    for _ in range(15):
        reports.advance(1, 20, 2000)
        low = decide(p, ctx(replicas=3, ongoing=1.5))
    assert low == 1 and p.last.lag == 0


def test_without_fresh_reports_it_scales_on_requests_and_says_so(caplog):
    clock = Clock()
    reports = Reports(clock)
    reports.alive = False
    p = policy(reports, clock)
    with caplog.at_level("WARNING"):
        assert decide(p, ctx(replicas=2, ongoing=7)) == 4  # 7 calls / 2 per replica
        decide(p, ctx(replicas=2, ongoing=7))
    assert p.last.source == "requests" and "no consumer reports its backlog" in p.last.line()
    assert [r.message for r in caplog.records].count("no consumer reports its backlog; scaling on requests alone") == 1


def test_requests_win_when_they_ask_for_more():
    clock = Clock()
    reports = Reports(clock)
    p = policy(reports, clock)
    reports.advance(1, 10, 10)
    assert decide(p, ctx(replicas=1, ongoing=9)) == 5  # HTTP clients: 9 calls in flight / 2


def test_flapping_input_does_not_flap_the_target():
    clock = Clock()
    reports = Reports(clock)
    p = policy(reports, clock)
    targets = []
    for i in range(30):  # bursts of 900 ev/s every other second, 450 on average; 2 replicas keep up
        reports.advance(1, 900 if i % 2 else 0, 450)
        targets.append(decide(p, ctx(replicas=2)))
    assert len(set(targets[10:])) == 1, targets  # the rate is taken over a 10 s window


def test_until_replicas_measured_themselves_the_default_capacity_is_used():
    clock = Clock()
    reports = Reports(clock)
    p = policy(reports, clock)
    decide(p, ctx(capacity=None))
    reports.advance(1, 350, 350)
    assert decide(p, ctx(capacity=None)) == math.ceil(350 / 0.7 / 100)
    assert decide(p, ctx(capacity=0.0)) == math.ceil(350 / 0.7 / 100)


def test_a_failing_policy_answers_with_the_request_policy():
    clock = Clock()
    p = policy(Reports(clock), clock)
    p.tracker.current = lambda: 1 / 0
    assert decide(p, ctx(replicas=1, ongoing=6)) == 3 and p.last.source == "requests"


def test_the_config_reaches_serve():
    auto = parse_config({"embedding": {"autoscaling": {"min_replicas": 1, "max_replicas": 3, "policy": "backlog",
                                                       "catch_up_s": 20}}}).embedding.autoscaling
    out = serve_autoscaling(auto)
    assert out["policy"] == {"policy_function": "freshvec.serve.autoscaling:BacklogPolicy",
                             "policy_kwargs": {"catch_up_s": 20.0, "target_utilization": 0.7}}
    assert (out["min_replicas"], out["max_replicas"], out["metrics_interval_s"], out["look_back_period_s"]) == (1, 3, 1.0, 5.0)
    assert "policy" not in serve_autoscaling(parse_config({}).embedding.autoscaling)
    from ray.serve.config import AutoscalingConfig

    AutoscalingConfig(**out)  # Serve accepts it
