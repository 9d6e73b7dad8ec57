"""A short chaos run (make chaos runs the long ones, with every fault): the broker restart alone and
the two overlapping faults, which between them restart Weaviate and Kafka, kill a Serve replica and
kill a consumer; then exactly the live keys, each with the model's vector for its latest text.
(Each single fault also has its own test: tests/integration/test_ingestion.py.)"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.timeout(600)


def test_short_chaos_run_loses_duplicates_and_leaves_stale_nothing(serve_app, weaviate_server, kafka, shared_ray):
    from bench.chaos import run
    from tests.integration.conftest import SERVE_PORT

    faults = ("restart kafka broker", "restart kafka broker during a weaviate outage",
              "kill serve replica while a consumer restarts")
    try:
        out = run(duration_s=30, rate=30, keys=60, pause_s=3, outage_s=3, http_port=SERVE_PORT, faults=faults)
    finally:
        shared_ray.invalidate()  # the run deployed the app with its own config
    assert [f["name"] for f in out["faults"]] == list(faults)
    assert all(len(f["by_partition_s"]) == 4 for f in out["faults"])  # a canary found on every partition
    assert out["expected"] > 20
    # On failure the whole report: where each partition's consumer stands says which one fell behind.
    assert (out["lost"], out["duplicate"], out["stale"]) == (0, 0, 0), json.dumps(out, indent=1)
    assert out["found"] == out["expected"]
    assert out["vectors_checked"] == out["expected"] and out["wrong_vectors"] == 0, json.dumps(out, indent=1)
