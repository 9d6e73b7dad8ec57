"""Bring the pipeline up in order: embedder, collection, topics, then consumers.

Config flows one way: the supervisor is given the model name and dimension the
embedder reports, and the collection is checked against them before any
consumer starts, so a mismatch stops `freshvec run` with a message.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re

from ray.experimental.internal_kv import _internal_kv_del, _internal_kv_put

from freshvec.cluster.supervisor import Supervisor, ensure_topics
from freshvec.core.config import FreshvecConfig
from freshvec.core import generation as generations
from freshvec.core.errors import DeployError
from freshvec.core.generation import Generation, version_of
from freshvec.core.identity import APP_NAME, KV_NAMESPACE, SIZING_KEY, ModelInfo
from freshvec.serve.sizing import sized

log = logging.getLogger("freshvec.pipeline")


def deploy_serve(cfg: FreshvecConfig) -> ModelInfo:
    """Run the Serve application (the embedder with its HTTP routes); wait until it is ready.

    The model and its tokenizer (for chunking) are looked up here first, so a wrong name or setting
    fails in a second with its own message instead of after Serve's retries of the replica or in each
    consumer; any other failure of the replicas is a DeployError.
    """
    from ray import serve

    from freshvec.actors.chunker import Chunker
    from freshvec.serve.app import build_app

    Chunker(cfg.pipeline.chunking, cfg.embedding.model)  # resolves the model, reads its tokenizer
    cfg, sizing = sized(cfg)
    serve.start(http_options={"host": cfg.http.host, "port": cfg.http.port})
    try:
        handle = serve.run(build_app(cfg), name=APP_NAME, route_prefix="/")
        info = handle.info.remote().result(timeout_s=120)
    except Exception as exc:
        raise DeployError(f"the embedding deployment did not start: {_cause(exc)}") from exc
    if sizing is not None:
        sizing = dataclasses.replace(sizing, lone_text_ms=info.get("lone_text_ms"))
        log.info("%s", sizing.line())
        _internal_kv_put(SIZING_KEY, json.dumps(sizing.as_dict()), namespace=KV_NAMESPACE)
    else:  # numbers from the config: no sizing line of an earlier run may be shown
        _internal_kv_del(SIZING_KEY, namespace=KV_NAMESPACE)
    return ModelInfo(info["model"], info["dim"])


def _cause(exc: BaseException) -> str:
    """The last `SomeError: message` line of what Serve reports (it carries the replica's traceback)."""
    lines = [line.strip() for line in str(exc).splitlines()]
    causes = [line for line in lines if re.match(r"^[\w.]*(Error|Exception): ", line)]
    return (causes[-1] if causes else f"{type(exc).__name__}: {lines[0] if lines else ''}")[:500]


def prepare_storage(cfg: FreshvecConfig, info: ModelInfo) -> Generation:
    """Create (or check) each region's Weaviate collection and Kafka topics; the index generation
    they hold (every region's alias must point at the same version)."""
    from freshvec.core.collections import ensure_collection
    from freshvec.core.store import connect
    from freshvec.cluster.placement import regions

    checked: dict[tuple, int | None] = {}
    for region in regions(cfg):
        weaviate = region.cfg.weaviate
        where = (weaviate.host, weaviate.http_port, weaviate.collection)
        if where not in checked:
            with connect(weaviate) as client:
                checked[where] = version_of(weaviate.collection, ensure_collection(client, weaviate.collection, info))
        ensure_topics(region.cfg)
    versions = set(checked.values())
    if len(versions) != 1 or None in versions:
        raise DeployError(f"the regions' collections are at different or unversioned collections "
                          f"({', '.join(f'{w[2]} at {w[0]}:{w[1]}: v{v}' for w, v in checked.items())}); "
                          "finish the reindex that left them so (freshvec reindex --resume)")
    return Generation(versions.pop(), info, APP_NAME)


def start_pipeline(cfg: FreshvecConfig, info: ModelInfo) -> Supervisor:
    """Storage checked, the generation published (for the consumers Ray restarts, and for /search),
    then the consumers."""
    from freshvec.cluster.placement import regions

    generation = prepare_storage(cfg, info)
    for alias in {region.cfg.weaviate.collection for region in regions(cfg)}:
        generations.publish(alias, generation)
    supervisor = Supervisor(cfg, generation)
    supervisor.start()
    return supervisor
