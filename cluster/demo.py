"""`freshvec demo`: ingest the demo corpus end to end and show what came out."""

from __future__ import annotations

import time

import numpy as np
import ray

from freshvec.core.config import FreshvecConfig
from freshvec.core.errors import RunIncomplete


def count_objects(cfg: FreshvecConfig) -> int:
    from freshvec.core.store import connect

    with connect(cfg.weaviate) as client:
        return client.collections.use(cfg.weaviate.collection).aggregate.over_all(total_count=True).total_count


def _catch_up(supervisor, timeout_s: float) -> None:
    """Wait until every consumer runs with no lag, then forget what it measured: records an earlier
    run left in the topic would otherwise count as the demo's (with their age as freshness)."""
    from tqdm import tqdm

    deadline = time.monotonic() + timeout_s
    with tqdm(unit="ev", desc="catching up on earlier records") as bar:
        while time.monotonic() < deadline:
            stats = ray.get([h.stats.remote() for h in supervisor.consumers().values()])
            lag = sum(s.lag or 0 for s in stats)
            bar.total = max(bar.total or 0, lag)
            bar.update(max(bar.total - lag - bar.n, 0))
            if all(s.state == "running" and s.lag == 0 for s in stats):
                break
            time.sleep(0.5)
    for handle in supervisor.consumers().values():
        ray.get(handle.drain_latencies.remote())


def run_demo(cfg: FreshvecConfig, n: int, timeout_s: float = 300.0) -> None:
    from ray import serve
    from tqdm import tqdm

    from freshvec.core.store import connect
    from freshvec.cluster.corpus import demo_documents
    from freshvec.cluster.pipeline import deploy_serve, start_pipeline
    from freshvec.cluster.producer import produce
    from freshvec.core.identity import APP_NAME, DEPLOYMENT_NAME

    info = deploy_serve(cfg)
    supervisor = start_pipeline(cfg, info)
    try:
        _catch_up(supervisor, timeout_s)
        docs = list(demo_documents(n))
        before = count_objects(cfg)
        produce(cfg, docs, total=len(docs))
        keys = {k for k, _ in docs}
        latencies: list[float] = []
        deadline = time.monotonic() + timeout_s
        with tqdm(total=len(docs), unit="ev", desc="ingested") as bar:
            while len(latencies) < len(docs) and time.monotonic() < deadline:
                for handle in supervisor.consumers().values():
                    latencies.extend(ray.get(handle.drain_latencies.remote()))
                bar.update(min(len(latencies), len(docs)) - bar.n)
                time.sleep(0.2)
        total = count_objects(cfg)
        print(f"\ningested {len(latencies)} events; collection {cfg.weaviate.collection} holds {total} objects "
              f"({len(keys)} demo keys, {before} before)")
        if latencies:
            print(f"freshness (event -> Weaviate ack): p50 {np.percentile(latencies, 50):.1f} ms, "
                  f"p99 {np.percentile(latencies, 99):.1f} ms")
        query = "how do I catch an exception?"
        vector = serve.get_deployment_handle(DEPLOYMENT_NAME, app_name=APP_NAME).embed.remote([query]).result()[0]
        with connect(cfg.weaviate) as client:
            hits = client.collections.use(cfg.weaviate.collection).query.near_vector(
                vector.tolist(), limit=3, return_metadata=["distance"])
        print(f"search {query!r}:")
        for obj in hits.objects:
            print(f"  {obj.metadata.distance:.3f}  {obj.properties['doc_id']}: {obj.properties['text'][:90]}")
        if len(latencies) < len(docs):
            raise RunIncomplete(f"only {len(latencies)} of {len(docs)} events were ingested in {timeout_s:.0f} s")
    finally:
        supervisor.stop()
        serve.shutdown()
