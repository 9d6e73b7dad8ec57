"""Find the records a service refuses inside a batch: split the batch in halves until each refusal is
alone. Pure logic; the consumer supplies the call and decides what a refusal is."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def split_refused(items: Sequence[T], call: Callable[[Sequence[T]], R], refusal: type[Exception]
                  ) -> tuple[list[tuple[Sequence[T], R]], list[tuple[T, Exception]]]:
    """Call `call(items)`; where it raises `refusal`, call it on each half, down to single items.

    Returns the groups that succeeded with their results, in the order of `items`, and each item
    refused on its own with the error. Any other exception propagates. A batch of n with one bad
    item costs about 2 log2(n) + 1 calls.
    """
    done: list[tuple[Sequence[T], R]] = []
    refused: list[tuple[T, Exception]] = []
    pending = [items]
    while pending:
        group = pending.pop()
        if not group:
            continue
        try:
            done.append((group, call(group)))
        except refusal as exc:
            if len(group) == 1:
                refused.append((group[0], exc))
            else:
                mid = len(group) // 2
                pending += [group[mid:], group[:mid]]  # the first half is popped first: order kept
    return done, refused
