"""A built-in demo corpus: paragraphs of the Python documentation topics that ship with CPython."""

from __future__ import annotations

import re
from collections.abc import Iterator


def demo_documents(n: int) -> Iterator[tuple[str, dict]]:
    """Yield up to `n` (key, value) pairs, keys like ``pydoc/assert/0``, texts 40-2000 characters."""
    from pydoc_data.topics import topics

    count = 0
    for topic in sorted(topics):
        paragraphs = [re.sub(r"\s+", " ", p).strip() for p in topics[topic].split("\n\n")]
        for i, text in enumerate(p for p in paragraphs if len(p) >= 40):
            if count >= n:
                return
            yield f"pydoc/{topic}/{i}", {"text": text[:2000], "metadata": {"topic": topic, "paragraph": i}}
            count += 1
