"""`freshvec reindex --model M`: re-embed every live document with M beside the running pipeline, then
switch to it in one step.

The documents come from the topics, replayed from their beginning by a second set of consumers (the
shadow, one per partition, in a consumer group of its own) into the next physical collection
`<alias>_v<n+1>`, embedded by a second Serve application running M. The topics are compacted (freshvec
creates them so), so they hold every live document's latest version; a topic that is not compacted
and no longer starts at offset 0 is refused. Replay keeps each key's order by construction (one
partition, read in order, as the live consumers do) and needs no coordination with the live writers.

When the shadow has caught up, the switch: the live consumers pause (their batch written and
committed), the shadow stops (committed), the next generation is published, the alias moves (one
Weaviate schema transaction), and the live consumers resume on M into the new collection from the
shadow's offsets: what the shadow had not written, they write; nothing goes to the wrong collection,
as each writer addresses its generation's physical collection, never the alias. /search resolves the
alias per query and embeds the query with the model of the collection it reads, asking the published
generation's application while the HTTP deployment still runs the old model. Then the HTTP deployment
is replaced by one of M, the consumers move to it, the reindex's application and shadow group go, and
the old collection is dropped (or kept, --keep-old).

Progress lives in Ray's key-value store: Ctrl-C or a crash stops only the shadow (the live pipeline
never depended on it); `--resume` goes on from the shadow's committed offsets or from the step where
the switch stopped, `--abort` undoes a reindex that has not begun to switch.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import ray

from freshvec.cluster.placement import regions
from freshvec.cluster.supervisor import Supervisor
from freshvec.core import collections, generation as generations, kafka
from freshvec.core.config import FreshvecConfig
from freshvec.core.errors import DeployError, ReindexError
from freshvec.core.generation import Generation, physical_name
from freshvec.core.identity import (APP_NAME, KV_NAMESPACE, NEXT_APP_NAME, RAY_NAMESPACE, REINDEX_KEY, ModelInfo,
                                    consumer_name, shadow_name)
from freshvec.core.store import connect

log = logging.getLogger("freshvec.reindex")

POLL_S = 0.5
# Caught up: every partition's shadow is at most this many records behind the log end, twice in a row.
# What it has not written at the switch, the live consumers write with M after it.
CAUGHT_UP_RECORDS = 64
SURGE_WAIT_S = 120.0  # for a second replica of the new model, before a lone old one is replaced


@dataclass
class State:
    """A reindex in progress, as kept in Ray's KV store."""

    model: ModelInfo  # the new model, as its deployment reports it
    version: int  # of the new collection
    old: Generation
    keep_old: bool
    old_group: str  # the live consumers' group; the shadow's is named after it
    phase: str = "backfill"  # -> switching -> replacing -> cleanup
    started_at: float = field(default_factory=time.time)
    progress: dict = field(default_factory=dict)  # the bar's figures, for `freshvec status`
    timings: dict = field(default_factory=dict)  # caught_up_at, switched_at, ...

    @property
    def group(self) -> str:
        return f"{self.old_group}-reindex-v{self.version}"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, raw: str | bytes) -> State:
        data = json.loads(raw)
        old = data.pop("old")
        return cls(**{**data, "model": ModelInfo(**data["model"]),
                      "old": Generation(old["version"], ModelInfo(**old["model"]), old["app"])})


def load_state() -> State | None:
    from ray.experimental.internal_kv import _internal_kv_get

    raw = _internal_kv_get(REINDEX_KEY, namespace=KV_NAMESPACE)
    return State.from_json(raw) if raw else None


def _save(state: State) -> None:
    from ray.experimental.internal_kv import _internal_kv_put

    _internal_kv_put(REINDEX_KEY, state.to_json(), overwrite=True, namespace=KV_NAMESPACE)


def _forget() -> None:
    from ray.experimental.internal_kv import _internal_kv_del

    _internal_kv_del(REINDEX_KEY, namespace=KV_NAMESPACE)


def with_model(cfg: FreshvecConfig, model: str) -> FreshvecConfig:
    return cfg.model_copy(update={"embedding": cfg.embedding.model_copy(update={"model": model})})


def _weaviates(cfg: FreshvecConfig) -> list:
    """Each distinct Weaviate collection (alias) of the config's regions, once."""
    seen, out = set(), []
    for region in regions(cfg):
        w = region.cfg.weaviate
        if (w.host, w.http_port, w.collection) not in seen:
            seen.add((w.host, w.http_port, w.collection))
            out.append(w)
    return out


def _partitions(cfg: FreshvecConfig) -> list[tuple[object, str, int]]:
    """(region, topic, partition) of every partition the pipeline consumes."""
    out = []
    for region in regions(cfg):
        client = kafka.admin(region.cfg.kafka)
        try:
            out += [(region, t, p) for t, p, _ in kafka.partitions(client, region.cfg.kafka.topics)]
        finally:
            client.close()
    return out


def run(cfg: FreshvecConfig, model: str | None, keep_old: bool = False, resume: bool = False,
        abort: bool = False, show: Callable[[str], None] = print, bar: bool = True) -> State | None:
    """The whole reindex, or its --resume / --abort; returns the finished state (with its timings)."""
    state = load_state()
    if abort:
        return _abort(cfg, state, show)
    if state is not None and not resume:
        raise ReindexError(f"a reindex to {state.model.model} is in progress ({state.phase}); run `freshvec reindex "
                           "--resume` to finish it or `freshvec reindex --abort` to undo it")
    if resume and state is None:
        raise ReindexError("no reindex is in progress: nothing to resume")
    if state is None:
        if not model:
            raise ReindexError("give the new model: freshvec reindex --model M")
        state = _begin(cfg, model, keep_old, show)
    if state.phase == "backfill":
        _backfill(cfg, state, show, bar)
    if state.phase == "switching":
        _switch(cfg, state, show)
    if state.phase == "replacing":
        _replace(cfg, state, show)
    if state.phase == "cleanup":
        _cleanup(cfg, state, show)
    return state


def _begin(cfg: FreshvecConfig, model: str, keep_old: bool, show) -> State:
    alias = cfg.weaviate.collection
    current = generations.current(alias)
    if current is None:
        raise ReindexError(f"no running pipeline serves the index {alias}: start `freshvec run` with this config "
                           "first (the reindex joins it through RAY_ADDRESS, or the local cluster)")
    problems = [p for region in regions(cfg) for p in kafka.replay_problems(region.cfg.kafka, region.cfg.kafka.topics)]
    if problems:
        raise ReindexError("the topics no longer hold every document, so a replay cannot rebuild the index: "
                           + "; ".join(problems))
    show(f"freshvec: deploying {model} beside {current.model.model} ...")
    info = _deploy_next(cfg, model)
    if info.model == current.model.model:
        _delete_app(NEXT_APP_NAME)
        raise ReindexError(f"the index {alias} already holds vectors of {info.model}")
    state = State(model=info, version=current.version + 1, old=current, keep_old=keep_old,
                  old_group=cfg.kafka.group_id)
    for w in _weaviates(cfg):
        with connect(w) as client:
            physical = physical_name(w.collection, state.version)
            client.collections.delete(physical)  # what an earlier, aborted attempt may have left
            collections.create(client, physical, info)
    _save(state)
    show(f"freshvec: re-embedding every document with {info.model} ({info.dim} dims) into "
         f"{physical_name(alias, state.version)}; the live pipeline goes on into {current.collection(alias)}")
    return state


def _deploy_next(cfg: FreshvecConfig, model: str) -> ModelInfo:
    """The reindex's Serve application for `model`: half the live deployment's replicas at most, on
    no Ray CPUs, no HTTP route; it embeds the backfill and, from the switch until the HTTP deployment
    is replaced, the live stream and the queries."""
    from ray import serve

    from freshvec.actors.chunker import Chunker
    from freshvec.cluster.pipeline import _cause
    from freshvec.serve.app import build_app
    from freshvec.serve.sizing import sized

    next_cfg, _ = sized(with_model(cfg, model))
    Chunker(next_cfg.pipeline.chunking, model)  # a wrong name fails here, in a second
    replicas = max(1, int(next_cfg.embedding.autoscaling.max_replicas) // 2)
    try:
        handle = serve.run(build_app(next_cfg, replicas=replicas, num_cpus=0), name=NEXT_APP_NAME,
                           route_prefix=None)
        info = handle.info.remote().result(timeout_s=300)
    except Exception as exc:
        raise DeployError(f"the deployment of {model} did not start: {_cause(exc)}") from exc
    return ModelInfo(info["model"], info["dim"])


def _next_app_running() -> bool:
    from ray import serve

    app = serve.status().applications.get(NEXT_APP_NAME)
    return app is not None and app.status == "RUNNING"


def _delete_app(name: str) -> None:
    from ray import serve

    serve.delete(name)


def _shadow(cfg: FreshvecConfig, state: State) -> Supervisor:
    shadow_cfg = cfg.model_copy(update={"kafka": cfg.kafka.model_copy(update={"group_id": state.group})})
    return Supervisor(shadow_cfg, Generation(state.version, state.model, NEXT_APP_NAME), role="shadow")


def _backfill(cfg: FreshvecConfig, state: State, show, bar: bool) -> None:
    from tqdm import tqdm

    if not _next_app_running():  # a --resume after the cluster lost it
        show(f"freshvec: deploying {state.model.model} again ...")
        _deploy_next(cfg, state.model.model)
    shadow = _shadow(cfg, state)
    shadow.start()
    progress = tqdm(desc=f"reindex -> {physical_name(cfg.weaviate.collection, state.version)}", unit="doc",
                    disable=not bar, dynamic_ncols=True, mininterval=1.0)
    started, caught, done_before = time.monotonic(), 0, state.progress.get("done", 0)
    try:
        while True:
            time.sleep(POLL_S)
            stats = _stats(shadow.consumers().values())
            if not stats:
                continue
            done = done_before + sum(s.consumed for s in stats)
            lags = {f"{s.topic}:{s.partition}": s.lag for s in stats}
            behind = sum(lag or 0 for lag in lags.values())
            rate = (done - done_before) / max(1e-9, time.monotonic() - started)
            progress.total = done + behind
            progress.update(done - progress.n)
            progress.set_postfix_str("lag " + " ".join(f"{k}={'?' if v is None else v}" for k, v in sorted(lags.items())))
            state.progress = {"done": done, "docs_per_s": round(rate, 1), "lag": lags,
                              "eta_s": round(behind / rate, 1) if rate > 0 else None}
            _save(state)
            complete = len(stats) == len(shadow.consumers()) and all(
                s.lag is not None and s.lag <= CAUGHT_UP_RECORDS and s.state == "running" for s in stats)
            caught = caught + 1 if complete else 0
            if caught >= 2:
                break
    except BaseException:
        progress.close()
        shadow.stop()
        show("freshvec: reindex interrupted; the live pipeline is untouched. `freshvec reindex --resume` goes on "
             "from here, `freshvec reindex --abort` undoes it")
        raise
    progress.close()
    state.timings["backfill_s"] = round(time.monotonic() - started, 2)
    state.timings["caught_up_at"] = time.time()
    state.phase = "switching"
    _save(state)
    _switch(cfg, state, show, shadow)


def _stats(handles) -> list:
    calls = [h.stats.remote() for h in handles]
    ready, _ = ray.wait(calls, num_returns=len(calls), timeout=5)
    out = []
    for ref in ready:
        try:
            out.append(ray.get(ref))
        except Exception:  # restarting: counted at the next look
            pass
    return out


def _live(cfg: FreshvecConfig) -> dict[tuple[str, int], object]:
    handles = {}
    for region, topic, partition in _partitions(cfg):
        try:
            handles[(topic, partition)] = ray.get_actor(consumer_name(region.name, topic, partition),
                                                        namespace=RAY_NAMESPACE)
        except ValueError:  # not started yet: the supervisor starts it on the published generation
            pass
    return handles


def _switch(cfg: FreshvecConfig, state: State, show, shadow: Supervisor | None = None) -> None:
    """Pause the live consumers, stop the shadow, publish, move the alias, resume the live ones on M."""
    alias = cfg.weaviate.collection
    live = _live(cfg)
    t0 = time.monotonic()
    ray.get([h.pause.remote() for h in live.values()])
    if shadow is not None:
        shadow.stop()
    else:
        _stop_shadow_leftovers(cfg)
    offsets = {}
    for region in regions(cfg):
        parts = [(t, p) for r, t, p in _partitions(cfg) if r.name == region.name]
        offsets.update(kafka.committed_offsets(region.cfg.kafka, state.group, parts))
    nxt = Generation(state.version, state.model, NEXT_APP_NAME)
    for w in _weaviates(cfg):
        generations.publish(w.collection, nxt)
    for w in _weaviates(cfg):
        with connect(w) as client:
            client.alias.update(alias_name=w.collection, new_target_collection=physical_name(w.collection, state.version))
    ray.get([h.resume.remote(nxt, offsets.get(tp) or 0) for tp, h in live.items()])
    state.timings["switch_s"] = round(time.monotonic() - t0, 3)
    state.timings["switched_at"] = time.time()
    state.phase = "replacing"
    _save(state)
    show(f"freshvec: switched in {state.timings['switch_s'] * 1000:.0f} ms: {alias} -> "
         f"{physical_name(alias, state.version)}; the live consumers embed with {state.model.model}")


def _stop_shadow_leftovers(cfg: FreshvecConfig) -> None:
    """Shadow consumers of an earlier run of this command that are still alive (a crash of its driver
    ends them with it, but a --resume may come first): stopped, their batch committed."""
    for region, topic, partition in _partitions(cfg):
        try:
            handle = ray.get_actor(shadow_name(region.name, topic, partition), namespace=RAY_NAMESPACE)
        except ValueError:
            continue
        try:
            ray.get(handle.stop.remote(), timeout=15)
        finally:
            ray.kill(handle, no_restart=True)


def _replace(cfg: FreshvecConfig, state: State, show) -> None:
    """The HTTP deployment becomes one of M, then the live consumers move to it. Serve replaces
    replicas a few at a time, the others answering; but a deployment of one replica would stop it
    before its successor runs and not answer for a model's load. So a lone replica first gets a
    second of the new model (where the cluster has room for it), then the configured scaling applies."""
    from ray import serve

    from freshvec.core.identity import DEPLOYMENT_NAME
    from freshvec.serve.app import build_app

    show(f"freshvec: replacing the HTTP deployment's model with {state.model.model} ...")
    new_cfg = with_model(cfg, state.model.model)
    app = serve.status().applications.get(APP_NAME)
    if app is not None and app.deployments[DEPLOYMENT_NAME].replica_states.get("RUNNING", 0) < 2:
        serve.run_many([serve.RunTarget(build_app(new_cfg, replicas=2), name=APP_NAME, route_prefix="/")],
                       wait_for_applications_running=False)
        deadline = time.monotonic() + SURGE_WAIT_S
        while serve.status().applications[APP_NAME].status != "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.5)
        if serve.status().applications[APP_NAME].status != "RUNNING":
            show(f"freshvec: no room for a second replica in {SURGE_WAIT_S:.0f} s; the HTTP endpoint waits for the "
                 "new model's replica to start")
    serve.run(build_app(new_cfg), name=APP_NAME, route_prefix="/")
    gen = Generation(state.version, state.model, APP_NAME)
    for w in _weaviates(cfg):
        generations.publish(w.collection, gen)
    live = _live(cfg)
    ray.get([h.pause.remote() for h in live.values()])
    ray.get([h.resume.remote(gen) for h in live.values()])
    state.phase = "cleanup"
    _save(state)


def _cleanup(cfg: FreshvecConfig, state: State, show) -> None:
    from ray import serve

    from freshvec.core.identity import DEPLOYMENT_NAME

    # An old replica still draining may be embedding a query through the reindex's application.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        app = serve.status().applications.get(APP_NAME)
        if app is None or not app.deployments[DEPLOYMENT_NAME].replica_states.get("STOPPING"):
            break
        time.sleep(0.5)
    _delete_app(NEXT_APP_NAME)
    for w in _weaviates(cfg):
        if not state.keep_old:
            with connect(w) as client:
                client.collections.delete(state.old.collection(w.collection))
    for region in regions(cfg):
        kafka.delete_group(region.cfg.kafka, state.group)
    _forget()
    old = state.old.collection(cfg.weaviate.collection)
    show(f"freshvec: reindex done: {cfg.weaviate.collection} holds {state.model.model}'s vectors; {old} "
         + ("kept (--keep-old)" if state.keep_old else "dropped")
         + f". Set embedding.model: {state.model.model} in the config for the next `freshvec run`.")


def _abort(cfg: FreshvecConfig, state: State | None, show) -> None:
    if state is None:
        raise ReindexError("no reindex is in progress: nothing to abort")
    if state.phase != "backfill":
        raise ReindexError(f"the reindex to {state.model.model} has begun to switch ({state.phase}); "
                           "`freshvec reindex --resume` finishes it")
    _stop_shadow_leftovers(cfg)
    _delete_app(NEXT_APP_NAME)
    for w in _weaviates(cfg):
        with connect(w) as client:
            client.collections.delete(physical_name(w.collection, state.version))
    for region in regions(cfg):
        kafka.delete_group(region.cfg.kafka, state.group)
    _forget()
    show(f"freshvec: reindex to {state.model.model} aborted; {cfg.weaviate.collection} still holds "
         f"{state.old.model.model}")
    return None


def describe(state: State | None) -> str | None:
    """One line for `freshvec status`."""
    if state is None:
        return None
    p = state.progress
    lag = " ".join(f"{k}={v}" for k, v in sorted((p.get("lag") or {}).items()))
    eta = f", ETA {p['eta_s']:.0f} s" if p.get("eta_s") is not None else ""
    return (f"reindex to {state.model.model} (v{state.version}): {state.phase}, {p.get('done', 0)} documents "
            f"at {p.get('docs_per_s', 0):.0f}/s{eta}; shadow lag {lag or '-'}")
