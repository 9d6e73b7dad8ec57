"""Autoscaling the embedding deployment on the Kafka backlog, on Serve's custom policy API.

Serve's own policy counts calls in flight per replica. A streaming pipeline's load is mostly not in
flight: each consumer keeps one or two calls out while the backlog waits in Kafka, so request
counting sees a trickle however far behind the consumers are. `BacklogPolicy` sizes the deployment
the way Flink's autoscaler sizes a job: the capacity needed is the input rate at the target
utilisation plus the backlog drained within the catch-up time,

    replicas = (input_rate / target_utilization + lag / catch_up_s) / texts_per_s_of_one_replica

and never fewer than Serve's request policy asks for (HTTP clients count too). The lag and the input
rate come from the consumers, which publish their partition's lag and end offset every second in
Ray's internal key-value store; a replica's throughput is what the replicas measure while busy
(`record_autoscaling_stats`). When no consumer has reported for `stale_s`, the policy answers with
the request policy alone and says so (log line, gauge, `freshvec status`). Serve applies the
upscale/downscale delays and the min/max bounds to the answer.

The policy runs in the Serve controller, every 0.1 s; it reads the store at most once a second.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass

from freshvec.core.config import AutoscalingConfig
from freshvec.core.identity import BACKLOG_PREFIX, DECISION_KEY, KV_NAMESPACE

log = logging.getLogger("freshvec.autoscaling")

CAPACITY_METRIC = "freshvec_capacity_texts_per_s"  # what a replica embeds per busy second


@dataclass(frozen=True)
class Backlog:
    lag: int  # records behind, over all partitions that reported
    rate: float  # records per second arriving (end offsets' growth)
    partitions: int


@dataclass(frozen=True)
class Decision:
    """The policy's last answer and why; shown by `freshvec status` and as a gauge."""

    policy: str
    source: str  # "backlog", or "requests" when the backlog is unknown
    target: int
    requested: float  # what Serve's request policy asked for
    lag: int | None = None
    rate: float | None = None
    capacity: float | None = None  # texts/s of one replica
    replicas: int = 0  # running when decided
    at: float = 0.0

    def line(self) -> str:
        if self.source != "backlog":
            return (f"policy {self.policy}: target {self.target} from requests ({self.requested:.1f}); "
                    "no consumer reports its backlog")
        return (f"policy {self.policy}: target {self.target} (lag {self.lag}, input {self.rate:.0f} ev/s, "
                f"{self.capacity:.0f} texts/s per replica, requests ask {self.requested:.1f})")


def serve_autoscaling(auto: AutoscalingConfig) -> dict:
    """Serve's `autoscaling_config` for the embedding deployment, from freshvec's."""
    out = {
        "min_replicas": auto.min_replicas,
        "initial_replicas": max(1, auto.min_replicas),
        "max_replicas": auto.max_replicas,
        "target_ongoing_requests": auto.target_ongoing_requests,
        "upscale_delay_s": auto.upscale_delay_s,
        "downscale_delay_s": auto.downscale_delay_s,
        "metrics_interval_s": auto.metrics_interval_s,
        "look_back_period_s": auto.look_back_period_s,
    }
    if auto.policy == "backlog":
        out["policy"] = {"policy_function": f"{__name__}:BacklogPolicy",
                         "policy_kwargs": {"catch_up_s": auto.catch_up_s, "target_utilization": auto.target_utilization}}
    return out


def read_backlog_reports() -> list[dict]:
    """Every consumer's last report: {"lag", "end", "at"} (Ray's internal KV; see actors/consumer.py)."""
    from ray.experimental.internal_kv import _internal_kv_get, _internal_kv_list

    out = []
    for key in _internal_kv_list(BACKLOG_PREFIX, namespace=KV_NAMESPACE):
        raw = _internal_kv_get(key, namespace=KV_NAMESPACE)
        if raw:
            out.append(json.loads(raw))
    return out


class BacklogTracker:
    """Total lag and input rate from the consumers' reports; None when none is fresh."""

    def __init__(self, stale_s: float = 5.0, window_s: float = 10.0,
                 read: Callable[[], list[dict]] = read_backlog_reports, clock: Callable[[], float] = time.time):
        self.stale_s, self.window_s, self._read, self._clock = stale_s, window_s, read, clock
        self._ends: deque[tuple[float, int]] = deque()  # (time, total end offset)
        self._partitions = 0

    def current(self) -> Backlog | None:
        now = self._clock()
        fresh = [r for r in self._read() if now - r["at"] <= self.stale_s]
        if not fresh:
            self._ends.clear()
            return None
        end = sum(r["end"] for r in fresh)
        if self._ends and len(fresh) != self._partitions:  # a partition came or went: the sum jumps
            self._ends.clear()
        self._partitions = len(fresh)
        self._ends.append((now, end))
        while self._ends and self._ends[0][0] < now - self.window_s:
            self._ends.popleft()
        (t0, e0), (t1, e1) = self._ends[0], self._ends[-1]
        rate = max(e1 - e0, 0) / (t1 - t0) if t1 - t0 >= 1.0 else 0.0
        return Backlog(sum(r["lag"] for r in fresh), rate, len(fresh))


def backlog_replicas(backlog: Backlog, capacity: float, catch_up_s: float, target_utilization: float) -> float:
    """Replicas needed to keep up with the input at the target utilisation and drain the lag in time."""
    return (backlog.rate / target_utilization + backlog.lag / catch_up_s) / capacity


class BacklogPolicy:
    """Serve autoscaling policy (`policy_function`); `policy_kwargs` are the constructor's arguments."""

    def __init__(self, catch_up_s: float = 30.0, target_utilization: float = 0.7, default_capacity: float = 100.0,
                 stale_s: float = 5.0, tracker: BacklogTracker | None = None):
        self.catch_up_s, self.target_utilization = catch_up_s, target_utilization
        self.default_capacity = default_capacity
        self.tracker = tracker or BacklogTracker(stale_s=stale_s)
        self._backlog: Backlog | None = None
        self._read_at = -math.inf
        self._published_at = -math.inf
        self._said_fallback = False
        self._gauge = None
        self.last: Decision | None = None

    def __call__(self, ctx) -> tuple[float, dict]:
        from ray.serve.autoscaling_policy import replica_queue_length_autoscaling_policy

        requested, _ = replica_queue_length_autoscaling_policy(ctx)
        try:
            decision = self.decide(ctx, requested)
        except Exception:  # an exception here would stop the controller's update of every app
            log.exception("backlog policy failed; using the request policy's answer")
            decision = Decision("backlog", "requests", math.ceil(requested), requested, replicas=ctx.current_num_replicas)
        self.last = decision
        self._publish(decision, ctx)
        return decision.target, {**ctx.policy_state, "freshvec_source": decision.source}

    def decide(self, ctx, requested: float) -> Decision:
        now = time.monotonic()
        if now - self._read_at >= 1.0:  # the store is read at most once a second
            self._backlog, self._read_at = self.tracker.current(), now
        backlog = self._backlog
        if backlog is None:
            if not self._said_fallback:
                log.warning("no consumer reports its backlog; scaling on requests alone")
                self._said_fallback = True
            return Decision("backlog", "requests", math.ceil(requested), requested, replicas=ctx.current_num_replicas,
                            at=time.time())
        self._said_fallback = False
        capacity = self.capacity(ctx)
        need = backlog_replicas(backlog, capacity, self.catch_up_s, self.target_utilization)
        return Decision("backlog", "backlog", math.ceil(max(requested, need)), requested, backlog.lag,
                        round(backlog.rate, 1), round(capacity, 1), ctx.current_num_replicas, time.time())

    def capacity(self, ctx) -> float:
        """Mean texts/s of one busy replica, as the replicas measure it; the default until they have."""
        measured = [v for v in (ctx.aggregated_metrics.get(CAPACITY_METRIC) or {}).values() if v and v > 0]
        return sum(measured) / len(measured) if measured else self.default_capacity

    def _publish(self, decision: Decision, ctx) -> None:
        """For `freshvec status` (internal KV) and the dashboards (a gauge), once a second."""
        now = time.monotonic()
        if now - self._published_at < 1.0:
            return
        self._published_at = now
        try:
            from ray.experimental.internal_kv import _internal_kv_put
            from ray.util.metrics import Gauge

            _internal_kv_put(DECISION_KEY, json.dumps(asdict(decision)), namespace=KV_NAMESPACE)
            if self._gauge is None:
                self._gauge = Gauge("freshvec_autoscale_target_replicas",
                                    "Replicas the embedding deployment's policy asks for, by what it went on.",
                                    tag_keys=("deployment", "source"))
            self._gauge.set(decision.target, tags={"deployment": ctx.deployment_name, "source": decision.source})
        except Exception:  # reporting must never stop scaling
            log.debug("could not publish the autoscaling decision", exc_info=True)


def read_decision() -> Decision | None:
    """The backlog policy's last decision, if it runs."""
    from ray.experimental.internal_kv import _internal_kv_get

    raw = _internal_kv_get(DECISION_KEY, namespace=KV_NAMESPACE)
    return Decision(**json.loads(raw)) if raw else None
