"""`freshvec status`: what a running deployment is doing, for people (table) and scripts (--json)."""

from __future__ import annotations

import json
import time

import ray

from freshvec.actors.progress import ConsumerStats
from freshvec.cluster.placement import Region, describe_missing, regions, regions_without_nodes
from freshvec.core import kafka
from freshvec.core.config import FreshvecConfig
from freshvec.core.identity import APP_NAME, DEPLOYMENT_NAME, RAY_NAMESPACE, consumer_name


def _consumer(region: Region, topic: str, partition: int) -> dict:
    """The consumer's own ConsumerStats (as a dict, for --json), or what is known when it does not answer."""
    name = consumer_name(region.name, topic, partition)
    base = {"name": name, "topic": topic, "partition": partition, "region": region.name}
    try:
        handle = ray.get_actor(name, namespace=RAY_NAMESPACE)
    except ValueError:
        return {**base, "state": "missing"}
    try:
        stats: ConsumerStats = ray.get(handle.stats.remote(), timeout=10)
    except Exception as exc:  # dead or restarting
        return {**base, "state": f"unreachable ({type(exc).__name__})"}
    return stats.as_dict()


def _serve() -> dict:
    from ray import serve

    try:
        app = serve.status().applications.get(APP_NAME)
    except Exception as exc:
        return {"status": f"unavailable ({type(exc).__name__})", "replicas": []}
    if app is None:
        return {"status": "not running", "replicas": []}
    deployment = app.deployments.get(DEPLOYMENT_NAME)
    replicas = []
    try:  # replica nodes need the state API (the dashboard); without it, counts only
        from ray.util.state import list_actors

        for a in list_actors(filters=[("class_name", "=", f"ServeReplica:{APP_NAME}:{DEPLOYMENT_NAME}"),
                                      ("state", "=", "ALIVE")]):
            replicas.append({"actor_id": a.actor_id, "node": a.node_id, "pid": a.pid})
    except Exception:
        pass
    states = {str(k): v for k, v in (deployment.replica_states if deployment else {}).items()}
    return {"status": str(app.status.value if hasattr(app.status, "value") else app.status),
            "replica_states": states, "running_replicas": states.get("RUNNING", 0),
            "target_replicas": _target_replicas(), "autoscaling": _decision(), "replicas": replicas}


def _sizing() -> dict | None:
    """What `auto` settings were sized to when the deployment started (serve/sizing.py), if any."""
    from ray.experimental.internal_kv import _internal_kv_get

    from freshvec.core.identity import KV_NAMESPACE, SIZING_KEY

    try:
        raw = _internal_kv_get(SIZING_KEY, namespace=KV_NAMESPACE)
    except Exception:
        return None
    return json.loads(raw) if raw else None


def _target_replicas() -> int | None:
    """What Serve is scaling the embedder to (serve.status() gives only the replicas' states)."""
    try:
        from ray.serve.context import _get_global_client

        details = _get_global_client().get_serve_details()
        return details["applications"][APP_NAME]["deployments"][DEPLOYMENT_NAME]["target_num_replicas"]
    except Exception:  # an older or newer Serve: status goes on without it
        return None


def _decision() -> dict | None:
    """The backlog policy's last decision with its inputs (None under Serve's request policy)."""
    from dataclasses import asdict

    from freshvec.serve.autoscaling import read_decision

    try:
        decision = read_decision()
    except Exception:
        return None
    if decision is None or time.time() - decision.at > 30:  # none, or a past run's
        return None
    return {**asdict(decision), "line": decision.line()}


def _collection(cfg: FreshvecConfig) -> dict:
    """The alias, the collection behind it, its model and size."""
    from freshvec.core import collections
    from freshvec.core.store import connect

    alias = cfg.weaviate.collection
    try:
        with connect(cfg.weaviate) as client:
            physical = collections.target(client, alias)
            if physical is None or not client.collections.exists(physical):
                return {"alias": alias, "collection": None}
            says = collections.stored(client, physical)
            return {"alias": alias, "collection": physical, "model": says.model, "dim": says.dim,
                    "objects": collections.count(client, physical)}
    except Exception as exc:  # Weaviate away: status still shows the consumers
        return {"alias": alias, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}


def collection_line(c: dict) -> str:
    if c.get("error"):
        return f"weaviate: {c['alias']}: unavailable ({c['error']})"
    if not c.get("collection"):
        return f"weaviate: {c['alias']}: no collection yet"
    return (f"weaviate: {c['alias']} -> {c['collection']} (model {c['model']}, {c['dim']} dims, "
            f"{c['objects']} objects)")


def collect(cfg: FreshvecConfig) -> dict:
    consumers = []
    all_regions = regions(cfg)
    for region in all_regions:
        admin = kafka.admin(region.cfg.kafka)
        try:
            consumers += [_consumer(region, t, p) for t, p, _ in kafka.partitions(admin, region.cfg.kafka.topics)]
        finally:
            admin.close()
    live = [c for c in consumers if "lag" in c]
    p50 = [c["p50_ms"] for c in live if c["p50_ms"] is not None]
    p99 = [c["p99_ms"] for c in live if c["p99_ms"] is not None]
    return {
        "consumers": consumers,
        "totals": {
            "consumers": len(consumers), "live": len(live),
            "lag": sum(c["lag"] or 0 for c in live),
            "throughput_eps": sum(c["throughput_eps"] for c in live),
            "dlq": sum(c["dead_lettered"] for c in live),
            "stuck": sum(1 for c in live if c.get("stuck")),
            "failed": sum(1 for c in live if c["state"] == "failed"),
            # Per-partition percentiles: the median of medians, the worst p99.
            "freshness_p50_ms": sorted(p50)[len(p50) // 2] if p50 else None,
            "freshness_p99_ms": max(p99) if p99 else None,
        },
        "serve": _serve(),
        "sizing": _sizing(),
        "collection": _collection(cfg),
        "reindex": _reindex(),
        "warnings": [describe_missing(r) for r in regions_without_nodes(all_regions, ray.nodes())],
    }


def _reindex() -> dict | None:
    """A reindex in progress (cluster/reindex.py), with its last progress figures."""
    import dataclasses

    from freshvec.cluster.reindex import describe, load_state

    state = load_state()
    return None if state is None else {**dataclasses.asdict(state), "line": describe(state)}


def stuck_line(consumer: dict) -> str:
    """Which partition, at which offset, for how long, on what error."""
    s = consumer["stuck"]
    return (f"{consumer['name']} at offset {s['offset'] if s['offset'] is not None else 'start'} for "
            f"{s['for_s']:.0f} s, {s['attempts']} attempts: {s['error']}")


def problem_lines(consumers: list[dict]) -> list[str]:
    """A line for each consumer that failed for good or is stuck retrying."""
    return ([f"failed: {c['name']}: {c['reason']}" for c in consumers if c["state"] == "failed"]
            + [f"stuck: {stuck_line(c)}" for c in consumers if c.get("stuck") and c["state"] != "failed"])


def render(status: dict) -> str:
    def ms(v):
        return "-" if v is None else f"{v:.1f}"

    lines = [f"{'TOPIC':<24} {'PART':>4} {'STATE':<10} {'REGION':<12} {'NODE':<10} {'LAG':>6} "
             f"{'P50 ms':>8} {'P99 ms':>8} {'EV/S':>7} {'DLQ':>5}"]
    for c in status["consumers"]:
        lines.append(f"{c['topic']:<24} {c['partition']:>4} {c['state']:<10} {c.get('region', '-'):<12} "
                     f"{(c.get('node_id') or '-')[:8]:<10} {c.get('lag') if c.get('lag') is not None else '-':>6} "
                     f"{ms(c.get('p50_ms')):>8} {ms(c.get('p99_ms')):>8} "
                     f"{c.get('throughput_eps', 0):>7.1f} {c.get('dead_lettered', '-'):>5}")
    t, s = status["totals"], status["serve"]
    lines.append(f"\n{t['live']}/{t['consumers']} consumers live; lag {t['lag']}; {t['throughput_eps']:.1f} ev/s; "
                 f"freshness p50 {ms(t['freshness_p50_ms'])} ms, p99 {ms(t['freshness_p99_ms'])} ms (last minute); "
                 f"DLQ {t['dlq']}")
    target = s.get("target_replicas")
    lines.append(f"serve: {s['status']}; replicas {s.get('running_replicas', 0)} running"
                 f"{'' if target is None else f' of {target} wanted'} {json.dumps(s.get('replica_states', {}))}"
                 + (f"; autoscaling {s['autoscaling']['line']}" if s.get("autoscaling") else "")
                 + "".join(f"\n  replica {r['actor_id'][:8]} on node {r['node'][:8]} (pid {r['pid']})"
                           for r in s["replicas"]))
    if status.get("sizing"):
        from freshvec.serve.sizing import Sizing

        lines.append(Sizing(**{**status["sizing"], "auto": tuple(status["sizing"]["auto"])}).line())
    if status.get("collection"):
        lines.append(collection_line(status["collection"]))
    if status.get("reindex"):
        lines.append(status["reindex"]["line"])
    lines += [f"warning: {w}" for w in status["warnings"]]
    lines += problem_lines(status["consumers"])
    return "\n".join(lines)
