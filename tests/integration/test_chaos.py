"""A short chaos run (make chaos runs the long one): every fault, then exactly the live keys."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.timeout(600)


def test_short_chaos_run_loses_duplicates_and_leaves_stale_nothing(serve_app, weaviate_server, kafka, shared_ray):
    from bench.chaos import run

    try:
        out = run(duration_s=40, rate=30, keys=60, pause_s=3, outage_s=3)
    finally:
        shared_ray.invalidate()  # the run deployed the app with its own config
    assert [f["name"] for f in out["faults"]] == [
        "kill consumer actor", "kill serve replica", "restart weaviate", "restart kafka broker"]
    assert out["expected"] > 20
    # On failure the whole report: where each partition's consumer stands says which one fell behind.
    assert (out["lost"], out["duplicate"], out["stale"]) == (0, 0, 0), json.dumps(out, indent=1)
    assert out["found"] == out["expected"]
