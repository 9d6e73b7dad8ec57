"""The pipeline supervisor: one consumer actor per partition, kept alive, grown with the topic.

It runs in the driver (`freshvec run`). Every `interval_s` it lists the
partitions of each region's topics and makes sure each has a live consumer
actor, placed in its region (cluster/placement.py): it starts consumers for new
partitions and replaces consumers that died for good (Ray itself restarts those
that crash, `max_restarts=-1`). It also says, naming the label, when a region
has no node to run its consumers on.
"""

from __future__ import annotations

import logging
import threading

import ray

from freshvec.actors.consumer import PartitionConsumer
from freshvec.core.config import FreshvecConfig
from freshvec.core.identity import RAY_NAMESPACE, ModelInfo, consumer_name
from freshvec.core.errors import KafkaUnavailableError, SinkError
from freshvec.cluster.placement import Region, consumer_placement, describe_missing, regions, regions_without_nodes

log = logging.getLogger("freshvec.supervisor")

def kafka_admin(cfg: FreshvecConfig):
    """A kafka-python admin client; KafkaUnavailableError, naming the brokers, when none answers."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    security = {k: v for k, v in cfg.kafka.consumer.items() if k.startswith(("security_", "sasl_", "ssl_"))}
    try:
        return KafkaAdminClient(bootstrap_servers=cfg.kafka.bootstrap_servers, request_timeout_ms=10_000, **security)
    except KafkaError as exc:
        raise KafkaUnavailableError(
            f"Kafka at {', '.join(cfg.kafka.bootstrap_servers)} does not answer ({type(exc).__name__}); start it "
            "(make services-up) or fix kafka.bootstrap_servers") from exc


def check_services(cfg: FreshvecConfig) -> None:
    """Fail in seconds, naming the service, when Kafka or Weaviate does not answer (before Ray starts)."""
    import socket

    from freshvec.core.store import is_ready

    def reachable(address: str) -> bool:
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=3).close()
            return True
        except (OSError, ValueError):
            return False

    if not any(reachable(a) for a in cfg.kafka.bootstrap_servers):  # kafka-python would retry for 30 s
        raise KafkaUnavailableError(
            f"Kafka at {', '.join(cfg.kafka.bootstrap_servers)} does not answer; start it (make services-up) "
            "or fix kafka.bootstrap_servers")
    kafka_admin(cfg).close()
    if not is_ready(cfg.weaviate):
        raise SinkError(f"Weaviate at {cfg.weaviate.host}:{cfg.weaviate.http_port} does not answer; start it "
                        "(make services-up) or fix weaviate.host/http_port")


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


def partitions(admin, topics: list[str]) -> list[tuple[str, int, int | None]]:
    """(topic, partition, leader broker id) of every partition of `topics`."""
    out = []
    for desc in admin.describe_topics(topics):
        if desc.get("error_code", 0) == 0:
            out.extend((desc["name"], p["partition_index"], p.get("leader_id")) for p in desc["partitions"])
    return sorted(out)


def broker_racks(admin) -> dict[int, str]:
    try:
        return {b["node_id"]: b["rack"] for b in admin.describe_cluster()["brokers"] if b.get("rack")}
    except Exception:  # racks are only a placement preference
        return {}


class Supervisor:
    def __init__(self, cfg: FreshvecConfig, model: ModelInfo, interval_s: float = 2.0):
        self.cfg, self.model, self.interval_s = cfg, model, interval_s
        self.regions = regions(cfg)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._admins: dict[str, object] = {}
        # Non-detached actors live as long as a handle does: the supervisor holds one per consumer.
        self._handles: dict[str, ray.actor.ActorHandle] = {}
        self._warned: set[str] = set()

    def _admin(self, region: Region):
        if region.name not in self._admins:
            self._admins[region.name] = kafka_admin(region.cfg)
        return self._admins[region.name]

    def consumer_options(self, region: Region, topic: str, partition: int, leader_rack: str | None) -> dict:
        return {
            "name": consumer_name(region.name, topic, partition), "namespace": RAY_NAMESPACE,
            "get_if_exists": True, "max_restarts": -1, "max_concurrency": 4,
            "num_cpus": self.cfg.pipeline.consumer_num_cpus,
            **consumer_placement(region, leader_rack),
        }

    def check_regions(self) -> list[str]:
        """A warning per region that no alive node can host; logged once until it recovers."""
        messages = []
        missing = regions_without_nodes(self.regions, ray.nodes())
        for region in missing:
            messages.append(describe_missing(region))
            if region.name not in self._warned:
                log.error(messages[-1])
        self._warned = {r.name for r in missing}
        return messages

    def reconcile(self) -> list[str]:
        """One pass: start a consumer for every partition that lacks a live one; returns names started."""
        self.check_regions()
        started = []
        remote_cls = ray.remote(PartitionConsumer)
        for region in self.regions:
            admin = self._admin(region)
            racks = broker_racks(admin) if region.racks else {}
            for topic, partition, leader in partitions(admin, region.cfg.kafka.topics):
                name = consumer_name(region.name, topic, partition)
                try:
                    ray.get_actor(name, namespace=RAY_NAMESPACE)  # alive or being restarted by Ray
                    continue
                except ValueError:  # never started, or dead for good
                    pass
                options = self.consumer_options(region, topic, partition, racks.get(leader))
                self._handles[name] = remote_cls.options(**options).remote(
                    region.cfg, topic, partition, self.model, region.name,
                    region.zone_label_key, {zone: rack for rack, zone in region.racks.items()})
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
                self._close_admins()

    def _close_admins(self) -> None:
        for admin in self._admins.values():
            try:
                admin.close()
            except Exception:
                pass
        self._admins.clear()

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop the loop and every consumer (each finishes its batch and closes its clients)."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout_s)
        handles = list(self._handles.values())
        try:
            ray.get([h.stop.remote() for h in handles], timeout=timeout_s)
        except Exception:
            log.warning("some consumers did not stop in %.0f s; killing them", timeout_s)
        for h in handles:
            ray.kill(h, no_restart=True)
        self._handles.clear()
        self._close_admins()
