"""The local content store: unchanged text reuses the vector; the cache stays bounded."""

from __future__ import annotations

import numpy as np

from freshvec.actors.state import ContentStore


def test_unchanged_text_returns_the_stored_vector():
    store = ContentStore(max_keys=10)
    v = np.ones(4, dtype=np.float32)
    store.remember("k", "hello", v)
    assert store.vector_if_unchanged("k", "hello") is v
    assert store.vector_if_unchanged("k", "hello!") is None
    store.forget("k")
    assert store.vector_if_unchanged("k", "hello") is None


def test_least_recently_used_keys_are_evicted():
    store = ContentStore(max_keys=2)
    for key in "abc":
        store.remember(key, key, np.zeros(2))
    assert len(store) == 2
    assert store.vector_if_unchanged("a", "a") is None
    assert store.vector_if_unchanged("c", "c") is not None
