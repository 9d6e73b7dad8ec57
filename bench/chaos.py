"""Chaos runs: faults while events flow; at the end Weaviate must hold exactly the live keys, each
with the model's vector for its latest text.

    make chaos        (CHAOS_RUNS full runs, 2 by default; a short one runs in the tests)

A producer sends inserts, updates and tombstones over a key space at a steady rate while, one after
another: a consumer actor is killed, a Serve replica is killed, Weaviate is stopped and restarted,
the Kafka broker is stopped and restarted, then two faults overlap: the broker restarts during a
Weaviate outage, and a Serve replica is killed while a consumer restarts. The truth is read back
from the topic itself (the latest record of each key by offset), so sends that failed while the
broker was down do not count. recovery_s of a fault: from the fault until /search finds a canary
sent to every partition after it. At the end every stored vector is compared with the model's own
encode of its key's latest text. Writes bench/results/chaos.json.
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
import uuid
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import drop_run_state, spread, write_json  # noqa: E402
from freshvec.core.config import FreshvecConfig, load_config, parse_config  # noqa: E402

# A stored vector counts as the model's vector for its text above this cosine (ONNX vs the replicas'
# backend differ by ~1e-6).
MIN_COSINE = 0.999
RUNS = int(os.environ.get("CHAOS_RUNS", 2))


def chaos_config(http_port: int | None = None) -> FreshvecConfig:
    base = load_config("deploy/local/freshvec.yaml").model_dump(mode="json")
    if http_port is not None:
        base["http"]["port"] = http_port
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


@dataclass(frozen=True)
class Latest:
    """A key's last record in the topic: what the pipeline must show (text None: deleted)."""

    text: str | None
    partition: int
    offset: int


def truth_from_topic(cfg: FreshvecConfig) -> dict[str, Latest]:
    """The latest record of every key, read back from the topic."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=cfg.kafka.bootstrap_servers, enable_auto_commit=False)
    parts = [TopicPartition(cfg.kafka.topics[0], p) for p in consumer.partitions_for_topic(cfg.kafka.topics[0])]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    end = consumer.end_offsets(parts)
    latest: dict[str, Latest] = {}
    while any(consumer.position(tp) < end[tp] for tp in parts):
        for batch in consumer.poll(timeout_ms=1000).values():
            for r in batch:
                text = None if r.value is None else json.loads(r.value)["text"]
                latest[r.key.decode()] = Latest(text, r.partition, r.offset)
    consumer.close()
    return latest


@dataclass(frozen=True)
class Stored:
    """One object in Weaviate, with where its text came from."""

    key: str
    text: str
    partition: int
    offset: int
    vector: list[float]


def weaviate_state(cfg: FreshvecConfig) -> list[Stored]:
    from freshvec.core.store import connect

    with connect(cfg.weaviate) as client:
        return [Stored(o.properties["doc_id"], o.properties["text"], o.properties["source_partition"],
                       o.properties["source_offset"], o.vector["default"])
                for o in client.collections.use(cfg.weaviate.collection).iterator(include_vector=True)]


def compare(latest: dict[str, Latest], found: list[Stored]) -> dict:
    """Counts, and for a run that did not converge the first few keys that differ, with the offset
    of the topic's latest record and of the one Weaviate holds (which says who wrote what)."""
    truth = {k: v.text for k, v in latest.items() if v.text is not None}
    by_key: dict[str, list[Stored]] = {}
    for o in found:
        by_key.setdefault(o.key, []).append(o)
    wrong = [k for k in sorted(set(truth) | set(by_key)) if [o.text for o in by_key.get(k, [])] != (
        [truth[k]] if k in truth else [])]
    return {
        "expected": len(truth),
        "found": sum(1 for k, t in truth.items() if [o.text for o in by_key.get(k, [])] == [t]),
        "lost": sum(1 for k in truth if k not in by_key),
        "duplicate": sum(len(v) - 1 for v in by_key.values()),
        "stale": sum(1 for k, t in truth.items() if k in by_key and t not in [o.text for o in by_key[k]])
                 + sum(1 for k in by_key if k not in truth),  # deleted, but still there
        "differing": [{"key": k, "partition": latest[k].partition if k in latest else None,
                       "topic_offset": latest[k].offset if k in latest else None,
                       "weaviate_offsets": [o.offset for o in by_key.get(k, [])]} for k in wrong[:10]],
    }


def wrong_vectors(cfg: FreshvecConfig, latest: dict[str, Latest], found: list[Stored]) -> tuple[int, int]:
    """(vectors checked, vectors whose cosine to the model's encode of the key's latest text is under
    MIN_COSINE): the same model, loaded here on the ONNX backend the CPU replicas run."""
    import numpy as np

    from freshvec.serve.model import load_sentence_transformer

    live = [o for o in found if latest.get(o.key) is not None and o.text == latest[o.key].text]
    if not live:
        return 0, 0
    model = load_sentence_transformer(cfg.embedding.model, backend="onnx")
    expected = model.encode([latest[o.key].text for o in live], normalize_embeddings=True)
    stored = np.array([o.vector for o in live], dtype=np.float32)
    stored /= np.linalg.norm(stored, axis=1, keepdims=True)
    cosine = (expected * stored).sum(axis=1)
    return len(live), int((cosine < MIN_COSINE).sum())


def _partitions(cfg: FreshvecConfig) -> list[int]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=cfg.kafka.bootstrap_servers)
    try:
        return sorted(consumer.partitions_for_topic(cfg.kafka.topics[0]) or [])
    finally:
        consumer.close()


def canary_recovery(cfg: FreshvecConfig, search_url: str, partitions: list[int], started: float,
                    timeout: float = 180) -> dict[int, float]:
    """Send a canary to every partition, wait until /search finds each one, then delete them; for each
    partition, seconds from the fault's start until its canary was found."""
    import httpx

    topic, tag = cfg.kafka.topics[0], uuid.uuid4().hex[:8]
    canaries = {p: f"canary-{tag}-p{p}" for p in partitions}
    deadline = time.monotonic() + timeout

    def send(partition: int, key: str, value) -> None:
        while True:  # the broker may still be coming back
            try:
                producer = _producer(cfg)
                producer.send(topic, key=key.encode(), value=value, partition=partition).get(timeout=30)
                producer.close()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    for p, key in canaries.items():
        send(p, key, json.dumps({"text": f"{key} is a canary of partition {p}"}).encode())
    waiting, found_at = dict(canaries), {}
    with httpx.Client(base_url=search_url, timeout=10) as http:
        while waiting and time.monotonic() < deadline:
            for p, key in list(waiting.items()):
                try:
                    r = http.post("/search", json={"query": f"{key} is a canary of partition {p}", "k": 1})
                    if r.status_code == 200 and [h["id"] for h in r.json()["results"]] == [key]:
                        del waiting[p]
                        found_at[p] = round(time.time() - started, 2)
                except httpx.HTTPError:  # the proxy or Weaviate may still be coming back
                    pass
            if waiting:
                time.sleep(0.2)
    if waiting:
        raise TimeoutError(f"no recovery within {timeout:.0f} s: /search does not find the canaries of "
                           f"partitions {sorted(waiting)}")
    for p, key in canaries.items():
        send(p, key, None)  # the canaries leave no trace
    return found_at


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


FAULTS = ("kill consumer actor", "kill serve replica", "restart weaviate", "restart kafka broker",
          "restart kafka broker during a weaviate outage", "kill serve replica while a consumer restarts")


def run(duration_s: float, rate: float, keys: int, pause_s: float, outage_s: float,
        http_port: int | None = None, faults: tuple[str, ...] = FAULTS) -> dict:
    """One chaos run with `faults` (names of FAULTS, in order); `http_port`: where Serve's HTTP proxy
    already listens, if it was started before."""
    import ray

    from freshvec.cluster.pipeline import deploy_serve, start_pipeline
    from freshvec.deploy.local.stack import default_kafka, default_weaviate

    cfg = chaos_config(http_port)
    info = deploy_serve(cfg)
    supervisor = start_pipeline(cfg, info)
    search_url = f"http://{cfg.http.host}:{cfg.http.port}"
    partitions = _partitions(cfg)
    time.sleep(3)
    kafka, weaviate = default_kafka(), default_weaviate()

    def kill_consumer():
        name = sorted(supervisor.consumers())[0]
        ray.kill(supervisor.consumers()[name], no_restart=True)

    def restart(service):
        service.stop()
        time.sleep(outage_s)
        service.start()

    def kafka_during_weaviate_outage():
        weaviate.stop()
        time.sleep(outage_s / 2)
        restart(kafka)
        time.sleep(outage_s / 2)
        weaviate.start()

    def replica_while_consumer_restarts():
        kill_consumer()
        kill_serve_replica()

    actions = dict(zip(FAULTS, [kill_consumer, kill_serve_replica, lambda: restart(weaviate), lambda: restart(kafka),
                                kafka_during_weaviate_outage, replica_while_consumer_restarts]))
    producer = Producer(cfg, keys, rate).start()
    results, t0 = [], time.time()
    try:
        for name in faults:
            fault = actions[name]
            time.sleep(pause_s)
            started = time.time()
            print(f"[{started - t0:6.1f} s] fault: {name}", flush=True)
            fault()
            found_at = canary_recovery(cfg, search_url, partitions, started)
            recovery = max(found_at.values())
            print(f"[{time.time() - t0:6.1f} s] recovered from {name} in {recovery:.1f} s "
                  f"(by partition: {found_at})", flush=True)
            results.append({"name": name, "recovery_s": recovery, "by_partition_s": found_at})
        time.sleep(max(0.0, duration_s - (time.time() - t0)))
    finally:
        producer.stop()
    latest = truth_from_topic(cfg)
    deadline = time.monotonic() + 180
    while True:  # wait until Weaviate converged (or the deadline says it never will)
        found = weaviate_state(cfg)
        summary = compare(latest, found)
        if summary["found"] == summary["expected"] and not summary["stale"] or time.monotonic() > deadline:
            break
        time.sleep(1)
    consumers = _consumer_states(supervisor)  # where each partition stands, for a run that did not converge
    supervisor.stop()
    checked, wrong = wrong_vectors(cfg, latest, found)
    out = {"faults": results, **summary, "vectors_checked": checked, "wrong_vectors": wrong,
           "sent": producer.sent, "send_failures": producer.failed, "consumers": consumers}
    drop_run_state(cfg)
    return out


def summarize(runs: list[dict]) -> dict:
    """Several runs in one report: counts summed, each fault's recovery as median, min and max."""
    names = [f["name"] for f in runs[0]["faults"]]
    recovery = {n: [f["recovery_s"] for r in runs for f in r["faults"] if f["name"] == n] for n in names}
    counts = ("expected", "found", "lost", "duplicate", "stale", "vectors_checked", "wrong_vectors", "sent",
              "send_failures")
    return {"runs": len(runs),
            "faults": [{"name": n, "recovery_s": spread(recovery[n])} for n in names],
            **{c: sum(r[c] for r in runs) for c in counts},
            "per_run": runs}


def main() -> None:
    import ray

    from freshvec.cluster import ray_env

    ray_env.apply_local()
    ray.init(include_dashboard=False, namespace="freshvec-chaos")
    runs = []
    try:
        for i in range(RUNS):
            print(f"chaos run {i + 1} of {RUNS}", flush=True)
            runs.append(run(duration_s=float(os.environ.get("CHAOS_DURATION_S", 120)), rate=40, keys=200,
                            pause_s=10, outage_s=5))
    finally:
        from ray import serve

        serve.shutdown()
        ray.shutdown()
    out = summarize(runs)
    path = write_json("chaos.json", out)
    print(json.dumps({k: v for k, v in out.items() if k != "per_run"}, indent=2))
    print(f"wrote {path}")
    if out["lost"] or out["duplicate"] or out["stale"] or out["wrong_vectors"]:
        sys.exit("chaos run lost, duplicated or left stale documents, or wrote a wrong vector")


if __name__ == "__main__":
    main()
