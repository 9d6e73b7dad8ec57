"""The consumer's local state store: the chunks it last wrote for each key.

The seed article's "local state stores" avoid remote lookups; here they avoid re-embedding. A chunk
whose text hashes the same as one the key last had reuses that vector, so an edit to one section of
a long document embeds that section's chunks only. The store also knows how many chunks each key
has in Weaviate, so a document that did not shrink needs no delete of stale chunks. It is a bounded
LRU cache in the actor's memory: a miss (a restart, an evicted key) only costs an embedding and a
delete by filter, never correctness.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np


def text_hash(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


class ContentStore:
    def __init__(self, max_chunks: int):
        """`max_chunks`: chunk vectors held in all (a 384-dim vector is 1.5 KB)."""
        self.max_chunks = max_chunks
        self._entries: OrderedDict[str, dict[bytes, np.ndarray]] = OrderedDict()  # key -> text hash -> vector
        self._counts: dict[str, int] = {}  # key -> chunks it has in Weaviate
        self._held = 0
        self._lock = threading.Lock()  # the consumer's poll thread reads while its writer thread writes

    def vectors_if_unchanged(self, key: str, texts: list[str]) -> list[np.ndarray | None]:
        """For each chunk text, the vector last written for the same text of `key`, else None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return [None] * len(texts)
            self._entries.move_to_end(key)
            return [entry.get(text_hash(t)) for t in texts]

    def chunk_count(self, key: str) -> int | None:
        """Chunks `key` has in Weaviate, as this store last wrote them; None when unknown."""
        with self._lock:
            return self._counts.get(key)

    def remember(self, key: str, texts: list[str], vectors: list[np.ndarray]) -> None:
        """Called only after Weaviate confirmed the write of all of `key`'s chunks."""
        entry = {text_hash(t): v for t, v in zip(texts, vectors)}
        with self._lock:
            self._drop(key)
            self._entries[key], self._counts[key] = entry, len(texts)
            self._held += len(entry)
            while self._held > self.max_chunks and len(self._entries) > 1:
                self._drop(next(iter(self._entries)))

    def forget(self, key: str) -> None:
        with self._lock:
            self._drop(key)

    def _drop(self, key: str) -> None:
        self._held -= len(self._entries.pop(key, {}))
        self._counts.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)
