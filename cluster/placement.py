"""Region placement: which Ray nodes a partition's consumer may run on.

A consumer carries a hard label selector for its region, so it never runs away
from its region's brokers (when its node dies, Ray restarts it on another node
of the same region). Where the partition leader's rack maps to a zone of the
region, the consumer prefers that zone and falls back to any node of the region.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from freshvec.core.config import FreshvecConfig

log = logging.getLogger("freshvec.placement")

LOCAL = "local"  # the implicit region of a config without `regions:`


@dataclass(frozen=True)
class Region:
    name: str
    cfg: FreshvecConfig  # this region's view (brokers, topics, Weaviate)
    labels: dict[str, str] = field(default_factory=dict)  # the node labels of the region; {} = any node
    zone_label_key: str = "zone"
    racks: dict[str, str] = field(default_factory=dict)  # Kafka rack -> zone label value


def regions(cfg: FreshvecConfig) -> list[Region]:
    if not cfg.regions:
        return [Region(LOCAL, cfg)]
    return [
        Region(name, cfg.for_region(name), {r.label_key: r.label_value or name}, r.zone_label_key,
               {z.client_rack: zone for zone, z in r.zones.items()})
        for name, r in cfg.regions.items()
    ]


def consumer_placement(region: Region, leader_rack: str | None) -> dict:
    """Ray actor options: a hard region selector, and a soft preference for the leader's zone."""
    if not region.labels:
        return {}
    zone = region.racks.get(leader_rack) if leader_rack else None
    if zone is None:
        return {"label_selector": dict(region.labels)}
    return {"label_selector": {**region.labels, region.zone_label_key: zone},
            "fallback_strategy": [{"label_selector": dict(region.labels)}]}


def regions_without_nodes(all_regions: list[Region], nodes: list[dict]) -> list[Region]:
    """Regions whose label no alive Ray node carries (their consumers would pend silently)."""
    alive = [n.get("Labels", {}) for n in nodes if n.get("Alive")]
    return [r for r in all_regions
            if r.labels and not any(all(labels.get(k) == v for k, v in r.labels.items()) for labels in alive)]


def describe_missing(region: Region) -> str:
    label = ",".join(f"{k}={v}" for k, v in region.labels.items())
    return (f"region {region.name}: no alive Ray node has the label {label}; its consumers wait until one joins "
            f"(start nodes with `ray start --labels={label}` or the region's `ray up` config)")
