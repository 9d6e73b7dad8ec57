"""The consumer's local state store: what it last wrote for each key.

The seed article's "local state stores" avoid remote lookups; here they avoid
re-embedding. When an update's text hashes the same as what was last written,
the cached vector is reused and only metadata changes. The store is a bounded
LRU cache and lives in the actor's memory: a miss (a restart, an evicted key)
only costs an embedding, never correctness.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np


def text_hash(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


class ContentStore:
    def __init__(self, max_keys: int):
        self.max_keys = max_keys
        self._entries: OrderedDict[str, tuple[bytes, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()  # the consumer's poll thread reads while its writer thread writes

    def vector_if_unchanged(self, key: str, text: str) -> np.ndarray | None:
        """The vector last written for `key` when its text is the same, else None."""
        digest = text_hash(text)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] != digest:
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def remember(self, key: str, text: str, vector: np.ndarray) -> None:
        """Called only after Weaviate confirmed the write."""
        digest = text_hash(text)
        with self._lock:
            self._entries[key] = (digest, vector)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_keys:
                self._entries.popitem(last=False)

    def forget(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)
