"""The pipeline supervisor: one consumer actor per partition, kept alive, grown with the topic.

It runs in the driver (`freshvec run`). Every `interval_s` it lists the
partitions of each topic and makes sure each has a live consumer actor: it
starts consumers for new partitions and replaces consumers that died for good
(Ray itself restarts those that crash, `max_restarts=-1`).
"""

from __future__ import annotations

import logging
import threading

import ray

from actors.consumer import PartitionConsumer, actor_name
from cluster.config import FreshvecConfig

log = logging.getLogger("freshvec.supervisor")

NAMESPACE = "freshvec"


def kafka_admin(cfg: FreshvecConfig):
    from kafka import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=cfg.kafka.bootstrap_servers, request_timeout_ms=10_000)


def ensure_topics(cfg: FreshvecConfig) -> None:
    """Create the source topics (with kafka.partitions_if_created partitions) and the DLQ when missing."""
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = kafka_admin(cfg)
    try:
        existing = set(admin.list_topics())
        wanted = {t: cfg.kafka.partitions_if_created for t in cfg.kafka.topics}
        wanted[cfg.pipeline.dlq_topic] = 1
        missing = [NewTopic(t, n, 1) for t, n in wanted.items() if t not in existing]
        if missing:
            try:
                admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()


def partitions(admin, topics: list[str]) -> list[tuple[str, int]]:
    out = []
    for desc in admin.describe_topics(topics):
        if desc.get("error_code", 0) == 0:
            out.extend((desc["name"], p["partition_index"]) for p in desc["partitions"])
    return sorted(out)


class Supervisor:
    def __init__(self, cfg: FreshvecConfig, model: str, dim: int, interval_s: float = 2.0):
        self.cfg, self.model, self.dim, self.interval_s = cfg, model, dim, interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._admin = None
        # Non-detached actors live as long as a handle does: the supervisor holds one per consumer.
        self._handles: dict[str, ray.actor.ActorHandle] = {}

    def consumer_options(self, topic: str, partition: int) -> dict:
        return {
            "name": actor_name(topic, partition), "namespace": NAMESPACE,
            "get_if_exists": True, "max_restarts": -1, "max_concurrency": 4,
            "num_cpus": self.cfg.pipeline.consumer_num_cpus,
        }

    def reconcile(self) -> list[str]:
        """One pass: start a consumer for every partition that lacks a live one; returns names started."""
        if self._admin is None:
            self._admin = kafka_admin(self.cfg)
        started = []
        remote_cls = ray.remote(PartitionConsumer)
        for topic, partition in partitions(self._admin, self.cfg.kafka.topics):
            name = actor_name(topic, partition)
            try:
                ray.get_actor(name, namespace=NAMESPACE)  # alive or being restarted by Ray
                continue
            except ValueError:  # never started, or dead for good
                pass
            self._handles[name] = remote_cls.options(**self.consumer_options(topic, partition)).remote(
                self.cfg, topic, partition, self.model, self.dim)
            started.append(name)
            log.info("started %s", name)
        return started

    def consumers(self) -> dict[str, ray.actor.ActorHandle]:
        """The consumer handles by actor name (a dead one stays until the next pass replaces it)."""
        return dict(self._handles)

    def start(self) -> None:
        self.reconcile()
        self._thread = threading.Thread(target=self._loop, name="freshvec-supervisor", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.reconcile()
            except Exception:
                log.exception("supervisor pass failed; trying again in %.0f s", self.interval_s)
                self._admin = None

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop the loop and every consumer (each finishes its batch and closes its clients)."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout_s)
        handles = list(self.consumers().values())
        try:
            ray.get([h.stop.remote() for h in handles], timeout=timeout_s)
        except Exception:
            log.warning("some consumers did not stop in %.0f s; killing them", timeout_s)
        for h in handles:
            ray.kill(h, no_restart=True)
        self._handles.clear()
        if self._admin is not None:
            self._admin.close()
            self._admin = None
