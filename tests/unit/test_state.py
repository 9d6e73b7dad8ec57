"""The local content store: unchanged chunk text reuses the vector; the cache stays bounded."""

from __future__ import annotations

import numpy as np

from freshvec.actors.state import ContentStore


def test_the_cache_reuses_vectors_per_chunk_text_and_knows_the_count():
    store = ContentStore(max_chunks=10)
    v = [np.full(2, i, dtype=np.float32) for i in range(3)]
    assert store.chunk_count("k") is None
    store.remember("k", ["a", "b", "c"], v)
    got = store.vectors_if_unchanged("k", ["b", "x", "a"])
    assert got[0] is v[1] and got[1] is None and got[2] is v[0]
    assert store.chunk_count("k") == 3
    store.forget("k")
    assert store.chunk_count("k") is None and store.vectors_if_unchanged("k", ["a"]) == [None]


def test_the_cache_is_bounded_by_chunks_held():
    store = ContentStore(max_chunks=5)
    store.remember("a", ["1", "2", "3"], [np.zeros(2)] * 3)
    store.remember("b", ["1", "2"], [np.zeros(2)] * 2)
    store.remember("c", ["1"], [np.zeros(2)])  # 6 > 5: the least recent key goes
    assert store.chunk_count("a") is None and store.chunk_count("b") == 2 and len(store) == 2


def test_least_recently_used_keys_are_evicted_first():
    store = ContentStore(max_chunks=2)
    store.remember("a", ["a"], [np.zeros(2)])
    store.remember("b", ["b"], [np.zeros(2)])
    store.vectors_if_unchanged("a", ["a"])  # a is used: b is now the least recent
    store.remember("c", ["c"], [np.zeros(2)])
    assert store.chunk_count("b") is None
    assert store.vectors_if_unchanged("a", ["a"])[0] is not None and store.chunk_count("c") == 1
