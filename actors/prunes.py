"""Deletes of stale chunks that may wait: for keys whose earlier versions this consumer does not know.

A document written with n chunks must not leave chunks n and up of an earlier, longer version. For a
key it wrote before (actors/state.py) the consumer knows whether the document shrank: then it deletes
with the write, otherwise it needs no delete. For a key it does not know (a new key, or one not seen
since the actor started or since the state evicted it) a delete by filter is needed in case, and for
a new key it finds nothing: sent with each lone event it was a second Weaviate request, ~2.5 ms of
Weaviate's CPU and of the event's latency (bench/README.md). Those deletes gather here and go as one,
at most `interval_s` after the oldest; the offset of a record whose delete still waits is not
committed, so a crash replays the record and its delete. Until then an earlier, longer version's extra
chunks can still be found: only for a key this consumer does not know, and for at most the interval.
"""

from __future__ import annotations

import time
from collections.abc import Callable

# Deferred deletes sent at once when this many keys wait (one filter of this many keys).
MAX_KEYS = 1000


class PendingPrunes:
    """Written by the consumer's writer thread only (one session's writer at a time)."""

    def __init__(self, interval_s: float, max_keys: int = MAX_KEYS):
        self.interval_s, self.max_keys = interval_s, max_keys
        self._waiting: dict[tuple[str, str], tuple[int, int]] = {}  # (topic, key) -> (first stale chunk, offset)
        self._since: float | None = None  # when the oldest waiting delete was deferred
        self._first: int | None = None  # the least offset waiting; None: none, or to be found again

    def defer(self, topic: str, key: str, keep: int, offset: int) -> None:
        """Chunks `keep` and up of `key` may be stale; the record at `offset` wrote the others. A later
        write of the key replaces an earlier entry: its `keep` is the one that holds now."""
        replaced = self._waiting.get((topic, key))
        self._waiting[(topic, key)] = (keep, offset)
        if replaced is not None and replaced[1] == self._first:
            self._first = None
        elif self._first is not None or len(self._waiting) == 1:
            self._first = offset if self._first is None else min(self._first, offset)
        if self._since is None:
            self._since = time.monotonic()

    def covered(self, topic: str, key: str) -> None:
        """A delete written with the batch (a shrink, a deletion) already removed what waited."""
        removed = self._waiting.pop((topic, key), None)
        if removed is not None and removed[1] == self._first:
            self._first = None

    def __contains__(self, topic_key: tuple[str, str]) -> bool:
        return topic_key in self._waiting

    def __len__(self) -> int:
        return len(self._waiting)

    @property
    def first_offset(self) -> int | None:
        """The earliest record whose delete waits: the committed offset must not pass it."""
        if not self._waiting:
            return None
        if self._first is None:  # asked once per batch: found again only when the least one left
            self._first = min(offset for _, offset in self._waiting.values())
        return self._first

    @property
    def due(self) -> bool:
        return bool(self._waiting) and (len(self._waiting) >= self.max_keys
                                        or time.monotonic() - self._since >= self.interval_s)

    def flush(self, delete: Callable[[list[tuple[str, str, int]]], None]) -> None:
        """`delete([(topic, key, keep), ...])`, then forget them; on an error they keep waiting."""
        if self._waiting:
            delete([(topic, key, keep) for (topic, key), (keep, _) in self._waiting.items()])
        self._waiting.clear()
        self._since = self._first = None
