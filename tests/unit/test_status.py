"""`freshvec status` renders the consumers' own typed stats: a failed or stuck consumer gets a line
naming it, and the totals count them."""

from __future__ import annotations

import json
import time

from freshvec.actors.progress import ConsumerStats, Stuck
from freshvec.cluster import status


def _consumer(partition: int, **kw) -> dict:
    fields = {"state": "running", **kw}
    return ConsumerStats(name=f"consumer:eu:docs:{partition}", topic="docs", partition=partition, region="eu",
                         node_id="abcdef0123", lag=0, consumed=10, **fields).as_dict()


def _report(consumers: list[dict]) -> dict:
    return {"consumers": consumers,
            "totals": {"consumers": len(consumers), "live": len(consumers), "lag": 0, "throughput_eps": 0.0,
                       "dlq": 0, "freshness_p50_ms": None, "freshness_p99_ms": None},
            "serve": {"status": "RUNNING", "replica_states": {}, "replicas": []}, "warnings": []}


def test_failed_and_stuck_consumers_are_named_with_their_reason():
    stuck = Stuck(offset=41, error="SinkError: weaviate write failed", attempts=7, since=time.time() - 30)
    report = _report([_consumer(0), _consumer(1, stuck=stuck),
                      _consumer(2, state="failed", reason="KafkaRefused: kafka poll failed: TOPIC_AUTHORIZATION_FAILED")])
    lines = status.render(report).splitlines()
    assert "failed: consumer:eu:docs:2: KafkaRefused: kafka poll failed: TOPIC_AUTHORIZATION_FAILED" in lines
    (line,) = [x for x in lines if x.startswith("stuck: ")]
    assert line.startswith("stuck: consumer:eu:docs:1 at offset 41 for 3") and line.endswith(
        "7 attempts: SinkError: weaviate write failed")
    assert status.problem_lines(report["consumers"][:1]) == []


def test_stats_travel_as_plain_data():
    stats = ConsumerStats(name="consumer:local:docs:0", state="running", consumed=3, p50_ms=1.5)
    out = stats.as_dict()
    assert out["consumed"] == 3 and out["p50_ms"] == 1.5 and out["stuck"] is None and out["reason"] is None


def test_the_sizing_of_auto_settings_is_shown_with_the_models_measured_speed():
    from freshvec.serve.sizing import Sizing

    sizing = Sizing(cores=2.0, streams=1, max_replicas=3, num_cpus=0.5,
                    auto=("embedding.threads", "embedding.num_cpus"), lone_text_ms=9.34)
    report = {**_report([_consumer(0)]), "sizing": json.loads(json.dumps(sizing.as_dict()))}  # as status --json has it
    assert ("sizing for 2 CPUs (embedding.threads, embedding.num_cpus auto): 1 to 3 replicas x 1 stream(s), "
            "0.5 CPU each; the model takes 9.3 ms for a lone text on one stream") in status.render(report).splitlines()
    assert not any(line.startswith("sizing") for line in status.render(_report([_consumer(0)])).splitlines())


def test_the_collection_behind_the_alias_is_shown():
    report = {**_report([_consumer(0)]), "collection": {"alias": "Document", "collection": "Document_v2",
                                                        "model": "m2", "dim": 768, "objects": 12}}
    assert "weaviate: Document -> Document_v2 (model m2, 768 dims, 12 objects)" in status.render(report).splitlines()
    report["collection"] = {"alias": "Document", "collection": None}
    assert "weaviate: Document: no collection yet" in status.render(report).splitlines()
