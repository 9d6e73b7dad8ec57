"""Region placement: hard region selectors, soft zone preference, regions without nodes."""

from __future__ import annotations

import pytest

from freshvec.core.config import ConfigError, parse_config
from freshvec.cluster.placement import LOCAL, consumer_placement, regions, regions_without_nodes

CFG = parse_config({
    "kafka": {"topics": ["documents"]},
    "regions": {
        "us-east-1": {"bootstrap_servers": ["10.0.0.1:9092"],
                      "security": {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512"},
                      "zones": {"us-east-1a": {"client_rack": "use1-az1"}}},
        "eu-west-1": {"bootstrap_servers": ["10.1.0.1:9092"], "topics": ["documents-eu"],
                      "label_key": "geo", "label_value": "eu",
                      "weaviate": {"host": "weaviate.eu", "collection": "DocumentEu"}},
    },
})


def test_without_regions_there_is_one_local_region_on_any_node():
    (region,) = regions(parse_config({}))
    assert region.name == LOCAL and region.labels == {}
    assert consumer_placement(region, None) == {}


def test_each_region_sees_its_own_brokers_topics_security_and_weaviate():
    us, eu = regions(CFG)
    assert us.cfg.kafka.bootstrap_servers == ["10.0.0.1:9092"] and us.cfg.kafka.topics == ["documents"]
    assert us.cfg.kafka.consumer["security_protocol"] == "SASL_SSL"
    assert us.cfg.kafka.consumer["fetch_min_bytes"] == 1  # the shared settings stay
    assert us.cfg.weaviate.collection == "Document"
    assert eu.cfg.kafka.topics == ["documents-eu"] and eu.cfg.weaviate.host == "weaviate.eu"
    assert us.labels == {"region": "us-east-1"} and eu.labels == {"geo": "eu"}


def test_consumers_are_pinned_to_their_region_and_prefer_the_leaders_zone():
    us, eu = regions(CFG)
    assert consumer_placement(us, None) == {"label_selector": {"region": "us-east-1"}}
    assert consumer_placement(us, "use1-az1") == {
        "label_selector": {"region": "us-east-1", "zone": "us-east-1a"},
        "fallback_strategy": [{"label_selector": {"region": "us-east-1"}}],
    }
    assert consumer_placement(us, "unknown-rack") == {"label_selector": {"region": "us-east-1"}}
    assert consumer_placement(eu, None) == {"label_selector": {"geo": "eu"}}


def test_regions_without_an_alive_labelled_node_are_reported():
    nodes = [{"Alive": True, "Labels": {"region": "us-east-1"}},
             {"Alive": False, "Labels": {"geo": "eu"}}]
    assert [r.name for r in regions_without_nodes(regions(CFG), nodes)] == ["eu-west-1"]


@pytest.mark.parametrize("data, message", [
    ({"regions": {"us": {"bootstrap_servers": []}}}, "regions.us.bootstrap_servers:"),
    ({"regions": {"us": {"bootstrap_servers": ["h:1"], "security": {"sasl_password": "x"}}}},
     "regions.us.security: unknown security setting(s): sasl_password"),
    ({"regions": {"us east": {"bootstrap_servers": ["h:1"]}}}, "region name 'us east'"),
    ({"regions": {"us": {"bootstrap_servers": ["h:1"], "zones": {"a": {}}}}}, "regions.us.zones.a.client_rack:"),
])
def test_bad_region_config_names_the_key(data, message):
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert message in str(err.value)
