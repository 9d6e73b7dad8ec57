"""The part of `make sim-regions` that runs on a region's Ray cluster, submitted as a Ray job by
bench/regions.py: the freshvec pipeline of one config, with every event's freshness (record
timestamp -> Weaviate ack, stamped by the consumers) collected from the driver's `measure` file
(answered with `measuring`) to its `stop` file, written where the driver reads it (the simulated hosts share this checkout).

    python bench/region_job.py CONFIG OUT_DIR
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def _labels(labels: dict) -> dict:
    return {k: v for k, v in labels.items() if not k.startswith("ray.io/")}


def main(config: str, out_dir: str) -> None:
    import ray
    from ray import serve

    from freshvec.cluster.pipeline import deploy_serve, start_pipeline
    from freshvec.core.config import load_config

    out = Path(out_dir)
    cfg = load_config(config)
    ray.init(address="auto", namespace="freshvec")
    supervisor = start_pipeline(cfg, deploy_serve(cfg))
    try:
        handles = supervisor.consumers()
        deadline = time.monotonic() + 180
        while not all(s.state == "running" for s in ray.get([h.stats.remote() for h in handles.values()])):
            if time.monotonic() > deadline:
                raise TimeoutError("consumers not running after 180 s")
            time.sleep(0.5)
        (out / "ready").write_text("")

        def drain() -> list[float]:
            return [x for batch in ray.get([h.drain_latencies.remote() for h in handles.values()]) for x in batch]

        while not (out / "measure").exists():  # warm-up events: not counted
            drain()
            time.sleep(0.5)
        drain()
        (out / "measuring").write_text("")
        latencies: list[float] = []
        while not (out / "stop").exists():
            latencies += drain()
            time.sleep(0.5)
        latencies += drain()
        # Where each consumer ran: its node's address and labels.
        where = {n["NodeID"]: {"ip": n["NodeManagerAddress"], "labels": _labels(n["Labels"])}
                 for n in ray.nodes() if n["Alive"]}
        from ray.util.state import list_actors

        stats = ray.get([h.stats.remote() for h in handles.values()])
        consumers = [{"node": where.get(a.node_id, {}).get("ip"), "labels": where.get(a.node_id, {}).get("labels")}
                     for a in list_actors(filters=[("class_name", "=", "PartitionConsumer"), ("state", "=", "ALIVE")])]
        batches = sum(s.batches for s in stats)
        records_per_batch = round(sum(s.consumed for s in stats) / batches, 2) if batches else None
        (out / "result.json").write_text(json.dumps({"latencies_ms": latencies, "nodes": list(where.values()),
                                                     "consumers": consumers, "records_per_batch": records_per_batch}))
    finally:
        supervisor.stop()
        serve.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:3])
