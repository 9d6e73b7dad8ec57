"""Bring the pipeline up in order: embedder, collection, topics, then consumers.

Config flows one way: the supervisor is given the model name and dimension the
embedder reports, and the collection is checked against them before any
consumer starts, so a mismatch stops `freshvec run` with a message.
"""

from __future__ import annotations

import logging
from freshvec.core.config import FreshvecConfig
from freshvec.core.identity import APP_NAME, ModelInfo
from freshvec.cluster.supervisor import Supervisor, ensure_topics

log = logging.getLogger("freshvec.pipeline")


def deploy_serve(cfg: FreshvecConfig) -> ModelInfo:
    """Run the Serve application (the embedder with its HTTP routes); wait until it is ready."""
    from ray import serve

    from freshvec.serve.app import build_app

    serve.start(http_options={"host": cfg.http.host, "port": cfg.http.port})
    handle = serve.run(build_app(cfg), name=APP_NAME, route_prefix="/")
    info = handle.info.remote().result(timeout_s=120)
    return ModelInfo(info["model"], info["dim"])


def prepare_storage(cfg: FreshvecConfig, info: ModelInfo) -> None:
    """Create (or check) each region's Weaviate collection and Kafka topics."""
    from freshvec.core.store import connect, ensure_collection
    from freshvec.cluster.placement import regions

    checked = set()
    for region in regions(cfg):
        weaviate = region.cfg.weaviate
        if (weaviate.host, weaviate.http_port, weaviate.collection) not in checked:
            with connect(weaviate) as client:
                ensure_collection(client, weaviate.collection, info)
            checked.add((weaviate.host, weaviate.http_port, weaviate.collection))
        ensure_topics(region.cfg)


def start_pipeline(cfg: FreshvecConfig, info: ModelInfo) -> Supervisor:
    prepare_storage(cfg, info)
    supervisor = Supervisor(cfg, info)
    supervisor.start()
    return supervisor
