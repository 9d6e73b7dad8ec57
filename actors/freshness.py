"""Freshness: event timestamp -> Weaviate acknowledgement, per record, over a sliding window."""

from __future__ import annotations

import time
from collections import deque

import numpy as np


class FreshnessWindow:
    def __init__(self, window_s: float = 60.0):
        self.window_s = window_s
        self._started = time.monotonic()
        self._samples: deque[tuple[float, float]] = deque()  # (monotonic time, latency ms)
        self.total = 0

    def add(self, latencies_ms: list[float]) -> None:
        now = time.monotonic()
        self._samples.extend((now, lat) for lat in latencies_ms)
        self.total += len(latencies_ms)
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._samples and self._samples[0][0] < now - self.window_s:
            self._samples.popleft()

    def percentiles(self, qs=(50, 99)) -> dict[str, float | None]:
        self._trim(time.monotonic())
        if not self._samples:
            return {f"p{q}_ms": None for q in qs}
        values = np.fromiter((lat for _, lat in self._samples), dtype=np.float64)
        return {f"p{q}_ms": float(np.percentile(values, q)) for q in qs}

    def rate(self) -> float:
        """Records acknowledged per second over the window (or since start, when younger)."""
        self._trim(time.monotonic())
        span = min(self.window_s, max(time.monotonic() - self._started, 1e-3))
        return len(self._samples) / span

    def __len__(self) -> int:
        return len(self._samples)
