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
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_fixed

from freshvec.actors.consumer import PartitionConsumer
from freshvec.cluster.placement import Region, consumer_placement, describe_missing, regions, regions_without_nodes
from freshvec.core import kafka
from freshvec.core.config import FreshvecConfig
from freshvec.core.errors import RegionError, SinkError
from freshvec.core.generation import Generation
from freshvec.core.identity import RAY_NAMESPACE, consumer_name, shadow_name
from freshvec.core.store import is_ready

log = logging.getLogger("freshvec.supervisor")

def check_services(cfg: FreshvecConfig) -> None:
    """Fail in seconds, naming the service, when Kafka or Weaviate does not answer (before Ray starts).

    Each is asked a few times over about 5 s, so a service that is just starting is waited for.
    """
    def attempts() -> Retrying:
        return Retrying(retry=retry_if_exception(lambda e: getattr(e, "retriable", False)),
                        stop=stop_after_delay(5), wait=wait_fixed(1), reraise=True)

    for attempt in attempts():
        with attempt:
            kafka.admin(cfg.kafka).close()
    for attempt in attempts():
        with attempt:
            if not is_ready(cfg.weaviate):
                raise SinkError(f"Weaviate at {cfg.weaviate.host}:{cfg.weaviate.http_port} does not answer; start "
                                "it (make services-up) or fix weaviate.host/http_port")


def require_region_nodes(cfg: FreshvecConfig, wait_s: float) -> None:
    """Wait up to `wait_s` for every region to have an alive node with its label; RegionError naming it otherwise."""
    import time

    deadline = time.monotonic() + wait_s
    while missing := regions_without_nodes(regions(cfg), ray.nodes()):
        if time.monotonic() >= deadline:
            label = ",".join(f"{k}={v}" for k, v in missing[0].labels.items())
            raise RegionError(f"region {missing[0].name}: no alive Ray node has the label {label} after "
                              f"{wait_s:.0f} s; start one with `ray start --labels={label}` (or the region's "
                              "`ray up` config), or remove the region from the config")
        time.sleep(1.0)


def ensure_topics(cfg: FreshvecConfig) -> None:
    """The source topics (kafka.partitions_if_created partitions, kafka.topic_config) and the DLQ, created
    when missing."""
    wanted = {t: cfg.kafka.partitions_if_created for t in cfg.kafka.topics}
    kafka.ensure_topics(cfg.kafka, {**wanted, cfg.pipeline.dlq_topic: 1},
                        configs={t: cfg.kafka.topic_config for t in cfg.kafka.topics})


class Supervisor:
    def __init__(self, cfg: FreshvecConfig, generation: Generation, interval_s: float = 2.0, role: str = "live"):
        """role "shadow": a reindex's consumers (cluster/reindex.py), named apart and placed on no Ray
        CPUs, as they run beside the live ones only until the switch."""
        self.cfg, self.generation, self.interval_s, self.role = cfg, generation, interval_s, role
        self.name = consumer_name if role == "live" else shadow_name
        self.regions = regions(cfg)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._admins: dict[str, object] = {}
        # Non-detached actors live as long as a handle does: the supervisor holds one per consumer.
        self._handles: dict[str, ray.actor.ActorHandle] = {}
        self._warned: set[str] = set()

    def _admin(self, region: Region):
        if region.name not in self._admins:
            self._admins[region.name] = kafka.admin(region.cfg.kafka)
        return self._admins[region.name]

    def consumer_options(self, region: Region, topic: str, partition: int, leader_rack: str | None) -> dict:
        return {
            "name": self.name(region.name, topic, partition), "namespace": RAY_NAMESPACE,
            "get_if_exists": True, "max_restarts": -1, "max_concurrency": 4,
            "num_cpus": self.cfg.pipeline.consumer_num_cpus if self.role == "live" else 0,
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
            racks = kafka.broker_racks(admin) if region.racks else {}
            for topic, partition, leader in kafka.partitions(admin, region.cfg.kafka.topics):
                name = self.name(region.name, topic, partition)
                try:
                    ray.get_actor(name, namespace=RAY_NAMESPACE)  # alive or being restarted by Ray
                    continue
                except ValueError:  # never started, or dead for good
                    pass
                options = self.consumer_options(region, topic, partition, racks.get(leader))
                self._handles[name] = remote_cls.options(**options).remote(
                    region.cfg, topic, partition, self.generation, region.name,
                    region.zone_label_key, {zone: rack for rack, zone in region.racks.items()}, self.role)
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
