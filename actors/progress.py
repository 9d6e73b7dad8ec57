"""What one consumer has done and where it stands: written by its threads, read by `stats()`.

`ConsumerStats` is what `freshvec status`, the tests and the benchmarks read: one plain data class
instead of a dict whose keys each reader spells again.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass, field, fields

from freshvec.actors.freshness import FreshnessWindow


@dataclass
class Counts:
    """Records by outcome since the actor started (a restarted actor starts at 0)."""

    consumed: int = 0
    upserted: int = 0
    deleted: int = 0
    skipped_unchanged: int = 0  # chunks whose vector was reused: their text had not changed
    dead_lettered: int = 0
    embedded: int = 0  # chunks embedded (a short document is one chunk)
    chunks_written: int = 0
    retries: int = 0
    batches: int = 0


@dataclass(frozen=True)
class Stuck:
    """The failure a partition has been retrying at one offset (None offset: before its first commit)."""

    offset: int | None
    error: str
    attempts: int
    since: float  # epoch seconds

    @property
    def for_s(self) -> float:
        return round(time.time() - self.since, 1)


@dataclass
class ConsumerStats(Counts):
    """A consumer's report: its counts since start, its identity and where it stands."""

    name: str = ""
    topic: str = ""
    partition: int = 0
    region: str = ""
    # starting, warming up, running, retrying, recovering (a session restarts), stopped, or failed
    state: str = ""
    reason: str | None = None  # why it failed: the error it cannot retry
    node_id: str = ""
    labels: dict = field(default_factory=dict)
    committed: int | None = None
    # The offset after the last record read: the records from `committed` to here are what the
    # consumer holds (being written, queued, prepared); librdkafka's prefetch comes on top.
    position: int | None = None
    lag: int | None = None
    p50_ms: float | None = None  # freshness over the last minute
    p99_ms: float | None = None
    throughput_eps: float = 0.0
    pid: int = 0
    rss_mb: float = 0.0
    stuck: Stuck | None = None

    def as_dict(self) -> dict:
        out = asdict(self)
        out["stuck"] = {**out["stuck"], "for_s": self.stuck.for_s} if self.stuck else None
        return out


class Progress:
    """Counters, freshness, lag, committed offset, state, and the failure the partition is stuck on."""

    def __init__(self, metrics):
        self.metrics = metrics
        self.state = "starting"
        self.reason: str | None = None
        self.committed: int | None = None
        self.lag: int | None = None
        self.counts = Counts()
        self.freshness = FreshnessWindow(window_s=60.0)
        self.stuck: Stuck | None = None
        self._recent: deque[float] = deque(maxlen=200_000)  # latencies for `drain_latencies`
        self._before_retry = "running"

    def count(self, **outcomes: int) -> None:
        for outcome, n in outcomes.items():
            setattr(self.counts, outcome, getattr(self.counts, outcome) + n)
            if outcome in ("consumed", "upserted", "deleted", "embedded", "skipped_unchanged", "chunks_written"):
                self.metrics.count(outcome, n)

    def acknowledged(self, latencies_ms: list[float]) -> None:
        """Event -> acknowledgement latencies of the records Weaviate (or the DLQ) just confirmed."""
        self.freshness.add(latencies_ms)
        self._recent.extend(latencies_ms)
        self.metrics.observe_freshness(latencies_ms)

    def drain_latencies(self) -> list[float]:
        out = list(self._recent)
        self._recent.clear()
        return out

    def set_lag(self, lag: int | None) -> None:
        if lag is not None:
            self.lag = lag
            self.metrics.set_lag(lag)

    def retrying(self, exc: BaseException, target: str, offset: int | None) -> None:
        if self.state != "retrying":
            self._before_retry = self.state
            self.state = "retrying"
        self.counts.retries += 1
        self.metrics.retry(target)
        self.note_failure(exc, offset)

    def recovered(self) -> None:
        if self.state == "retrying":
            self.state = self._before_retry

    def note_failure(self, exc: BaseException, offset: int | None) -> None:
        """Remember what the partition is stuck on, for `freshvec status` and the stuck metric."""
        error = f"{type(exc).__name__}: {exc}"[:500]
        stuck = self.stuck  # one read: the other thread may clear it meanwhile
        if stuck is None or stuck.offset != offset:
            self.stuck = Stuck(offset, error, 1, time.time())
        else:
            self.stuck = Stuck(offset, error, stuck.attempts + 1, stuck.since)
        self.metrics.set_stuck(time.time() - self.stuck.since)

    def clear_failure(self) -> None:
        if self.stuck is not None:
            self.stuck = None
            self.metrics.set_stuck(0.0)

    def fail(self, exc: BaseException) -> None:
        """A failure no retry can fix: the consumer stops here until someone changes something."""
        self.state, self.reason = "failed", f"{type(exc).__name__}: {exc}"[:1000]
        self.metrics.set_failed(True)

    def snapshot(self, **identity) -> ConsumerStats:
        counts = {f.name: getattr(self.counts, f.name) for f in fields(Counts)}
        return ConsumerStats(**counts, **identity, state=self.state, reason=self.reason, committed=self.committed,
                             lag=self.lag, **self.freshness.percentiles(), throughput_eps=self.freshness.rate(),
                             stuck=self.stuck)
