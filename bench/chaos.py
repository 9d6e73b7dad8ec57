"""Chaos run: faults while events flow; at the end Weaviate must hold exactly the live keys.

    make chaos        (full run; a short one runs in the tests)

A producer sends inserts, updates and tombstones over a key space at a steady
rate while, one after another: a consumer actor is killed, a Serve replica is
killed, Weaviate is stopped and restarted, the Kafka broker is stopped and
restarted. The truth is read back from the topic itself (the latest record of
each key by offset), so sends that failed while the broker was down do not
count. recovery_s of a fault: from the fault until a canary event sent after it
is searchable. Writes bench/results/chaos.json.
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import drop_run_state, write_json  # noqa: E402
from freshvec.core.config import FreshvecConfig, load_config, parse_config  # noqa: E402


def chaos_config() -> FreshvecConfig:
    base = load_config("deploy/local/freshvec.yaml").model_dump(mode="json")
    suffix = uuid.uuid4().hex[:8]
    base["kafka"] |= {"topics": [f"chaos-{suffix}"], "group_id": f"chaos-{suffix}"}
    base["kafka"]["producer"] |= {"retries": 10, "max_in_flight_requests_per_connection": 1}
    base["weaviate"]["collection"] = f"Chaos{suffix}"
    base["pipeline"]["dlq_topic"] = f"chaos-{suffix}.dlq"
    return parse_config(base)


def _producer(cfg: FreshvecConfig):
    """The chaos run's producer: kafka-python, as it was measured with, independent of the pipeline's client."""
    from kafka import KafkaProducer

    return KafkaProducer(bootstrap_servers=cfg.kafka.bootstrap_servers, **cfg.kafka.producer)


class Producer:
    """Steady churn over `keys` keys until stopped; failures (broker down) are counted, not retried."""

    def __init__(self, cfg: FreshvecConfig, keys: int, rate: float, seed: int = 7):
        self.cfg, self.keys, self.rate = cfg, keys, rate
        self.producer = _producer(cfg)
        self.rng = random.Random(seed)
        self.live: set[str] = set()
        self.sent = self.failed = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        start, i = time.perf_counter(), 0
        while not self._stop.is_set():
            key = f"key-{self.rng.randrange(self.keys)}"
            delete = key in self.live and self.rng.random() < 0.15
            value = None if delete else json.dumps({"text": f"{key} revision {i}"}).encode()
            (self.live.discard if delete else self.live.add)(key)
            try:
                self.producer.send(self.cfg.kafka.topics[0], key=key.encode(), value=value).add_errback(self._failed)
                self.sent += 1
            except Exception:
                self.failed += 1
            i += 1
            delay = start + i / self.rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)

    def _failed(self, _exc):
        self.failed += 1

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self._stop.set()
        self.thread.join()
        self.producer.flush(timeout=120)
        self.producer.close()


def truth_from_topic(cfg: FreshvecConfig) -> dict[str, str]:
    """The latest value of every key, read back from the topic: what the pipeline must show."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=cfg.kafka.bootstrap_servers, enable_auto_commit=False)
    parts = [__import__("kafka").TopicPartition(cfg.kafka.topics[0], p)
             for p in consumer.partitions_for_topic(cfg.kafka.topics[0])]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    end = consumer.end_offsets(parts)
    latest: dict[str, str | None] = {}
    while any(consumer.position(tp) < end[tp] for tp in parts):
        for batch in consumer.poll(timeout_ms=1000).values():
            for r in batch:
                latest[r.key.decode()] = None if r.value is None else json.loads(r.value)["text"]
    consumer.close()
    return {k: v for k, v in latest.items() if v is not None}


def weaviate_state(cfg: FreshvecConfig) -> list[tuple[str, str]]:
    from freshvec.core.store import connect

    with connect(cfg.weaviate) as client:
        return [(o.properties["doc_id"], o.properties["text"])
                for o in client.collections.use(cfg.weaviate.collection).iterator()]


def compare(truth: dict[str, str], found: list[tuple[str, str]]) -> dict:
    by_key: dict[str, list[str]] = {}
    for key, text in found:
        by_key.setdefault(key, []).append(text)
    return {
        "expected": len(truth),
        "found": sum(1 for k, t in truth.items() if by_key.get(k) == [t]),
        "lost": sum(1 for k in truth if k not in by_key),
        "duplicate": sum(len(v) - 1 for v in by_key.values()),
        "stale": sum(1 for k, t in truth.items() if k in by_key and t not in by_key[k])
                 + sum(1 for k in by_key if k not in truth),  # deleted, but still there
    }


def canary_recovery(cfg: FreshvecConfig, started: float, timeout: float = 180) -> float:
    """Send a canary, wait until Weaviate has it, then delete it; seconds since the fault started."""
    from freshvec.core.records import object_id
    from freshvec.core.store import connect

    topic, key = cfg.kafka.topics[0], f"canary-{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + timeout

    def send(value) -> None:
        while True:  # the broker may still be coming back
            try:
                producer = _producer(cfg)
                producer.send(topic, key=key.encode(), value=value).get(timeout=30)
                producer.close()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    send(json.dumps({"text": f"canary {key}"}).encode())
    while time.monotonic() < deadline:
        try:
            with connect(cfg.weaviate) as client:
                if client.collections.use(cfg.weaviate.collection).data.exists(object_id(topic, key)):
                    recovered = time.time() - started
                    send(None)  # the canary leaves no trace
                    return recovered
        except Exception:  # Weaviate may still be coming back
            pass
        time.sleep(0.2)
    raise TimeoutError(f"no recovery within {timeout:.0f} s")


def _consumer_states(supervisor) -> list[dict]:
    import ray

    out = []
    for name, handle in sorted(supervisor.consumers().items()):
        try:
            s = ray.get(handle.stats.remote(), timeout=10)
            out.append({"name": name, "state": s.state, "committed": s.committed, "lag": s.lag,
                        "consumed": s.consumed, "retries": s.retries,
                        "stuck": s.as_dict()["stuck"], "reason": s.reason})
        except Exception as exc:  # a consumer that does not answer is itself the finding
            out.append({"name": name, "error": f"{type(exc).__name__}: {exc}"[:300]})
    return out


def kill_serve_replica() -> None:
    import ray

    for info in ray.util.list_named_actors(all_namespaces=True):
        if "SERVE_REPLICA" in info["name"] and "Embedder" in info["name"]:
            ray.kill(ray.get_actor(info["name"], namespace=info["namespace"]), no_restart=True)
            return
    raise RuntimeError("no Embedder replica found")


def run(duration_s: float, rate: float, keys: int, pause_s: float, outage_s: float) -> dict:
    import ray

    from freshvec.cluster.pipeline import deploy_serve, start_pipeline
    from freshvec.deploy.local.stack import default_kafka, default_weaviate

    cfg = chaos_config()
    info = deploy_serve(cfg)
    supervisor = start_pipeline(cfg, info)
    time.sleep(3)
    kafka, weaviate = default_kafka(), default_weaviate()

    def kill_consumer():
        name = sorted(supervisor.consumers())[0]
        ray.kill(supervisor.consumers()[name], no_restart=True)

    def restart(service):
        service.stop()
        time.sleep(outage_s)
        service.start()

    faults = [("kill consumer actor", kill_consumer), ("kill serve replica", kill_serve_replica),
              ("restart weaviate", lambda: restart(weaviate)), ("restart kafka broker", lambda: restart(kafka))]
    producer = Producer(cfg, keys, rate).start()
    results, t0 = [], time.time()
    try:
        for name, fault in faults:
            time.sleep(pause_s)
            started = time.time()
            print(f"[{started - t0:6.1f} s] fault: {name}", flush=True)
            fault()
            recovery = canary_recovery(cfg, started)
            print(f"[{time.time() - t0:6.1f} s] recovered from {name} in {recovery:.1f} s", flush=True)
            results.append({"name": name, "recovery_s": round(recovery, 2)})
        time.sleep(max(0.0, duration_s - (time.time() - t0)))
    finally:
        producer.stop()
    truth = truth_from_topic(cfg)
    deadline = time.monotonic() + 180
    while True:  # wait until Weaviate converged (or the deadline says it never will)
        summary = compare(truth, weaviate_state(cfg))
        if summary["found"] == summary["expected"] and not summary["stale"] or time.monotonic() > deadline:
            break
        time.sleep(1)
    consumers = _consumer_states(supervisor)  # where each partition stands, for a run that did not converge
    supervisor.stop()
    out = {"faults": results, **summary, "sent": producer.sent, "send_failures": producer.failed,
           "consumers": consumers}
    drop_run_state(cfg)
    return out


def main() -> None:
    import ray

    from freshvec.cluster import ray_env

    ray_env.apply_local()
    ray.init(include_dashboard=False, namespace="freshvec-chaos")
    try:
        out = run(duration_s=float(os.environ.get("CHAOS_DURATION_S", 120)), rate=40, keys=200,
                  pause_s=10, outage_s=5)
    finally:
        from ray import serve

        serve.shutdown()
        ray.shutdown()
    path = write_json("chaos.json", out)
    print(json.dumps(out, indent=2))
    print(f"wrote {path}")
    if out["lost"] or out["duplicate"] or out["stale"]:
        sys.exit("chaos run lost, duplicated or left stale documents")


if __name__ == "__main__":
    main()
