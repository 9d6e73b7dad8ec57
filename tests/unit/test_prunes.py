"""PendingPrunes alone: which deletes wait, which offset they hold back, when they are due."""

from __future__ import annotations

import pytest

from freshvec.actors.prunes import PendingPrunes


def test_a_later_write_of_a_key_replaces_what_waited_for_it():
    p = PendingPrunes(interval_s=3600)
    p.defer("t", "a", 3, offset=10)
    p.defer("t", "b", 1, offset=11)
    p.defer("t", "a", 1, offset=12)
    assert p.first_offset == 11 and len(p) == 2 and not p.due
    sent = []
    p.flush(sent.extend)
    assert sorted(sent) == [("t", "a", 1), ("t", "b", 1)] and p.first_offset is None and len(p) == 0


def test_due_after_the_interval_or_at_max_keys():
    p = PendingPrunes(interval_s=0)
    assert not p.due  # nothing waits
    p.defer("t", "a", 1, offset=0)
    assert p.due
    p = PendingPrunes(interval_s=3600, max_keys=2)
    p.defer("t", "a", 1, offset=0)
    assert not p.due
    p.defer("t", "b", 1, offset=1)
    assert p.due


def test_a_covered_key_no_longer_waits_and_a_failed_delete_keeps_them_all():
    p = PendingPrunes(interval_s=3600)
    p.defer("t", "a", 1, offset=0)
    p.defer("t", "b", 2, offset=1)
    p.covered("t", "a")
    assert ("t", "a") not in p and ("t", "b") in p and p.first_offset == 1

    def refused(stale):
        raise RuntimeError("weaviate away")

    with pytest.raises(RuntimeError):
        p.flush(refused)
    assert ("t", "b") in p and p.first_offset == 1


def test_the_first_offset_is_the_least_waiting_one_whatever_the_order_of_writes():
    import random

    rng, p, model = random.Random(7), PendingPrunes(interval_s=3600), {}
    for _ in range(3000):
        key, offset = f"k{rng.randrange(20)}", rng.randrange(1000)  # replays write lower offsets again
        if rng.random() < 0.3:
            p.covered("t", key)
            model.pop(key, None)
        else:
            p.defer("t", key, 1, offset)
            model[key] = offset
        assert p.first_offset == min(model.values(), default=None)
        if rng.random() < 0.02:
            p.flush(lambda stale: None)
            model.clear()
