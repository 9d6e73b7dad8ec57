"""Regions on one machine: a Ray cluster of labelled nodes in two regions, one Kafka broker per region.

Consumers of a region must run only on nodes with its label (checked through Ray's state API),
documents from both regions must land in Weaviate, and when a node of a region goes away its
consumers move to another node of the same region, with nothing lost.
"""

from __future__ import annotations

import socket
import uuid

import pytest
import ray

from tests.integration.conftest import Env, wait_until

pytestmark = pytest.mark.timeout(600)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "labels": {"role": "embed"}, "include_dashboard": True,
        "dashboard_port": _free_port(), "object_store_memory": 150 * 1024**2})
    nodes = {
        "us-1": cluster.add_node(num_cpus=2, labels={"region": "us"}, object_store_memory=100 * 1024**2),
        "us-2": cluster.add_node(num_cpus=2, labels={"region": "us"}, object_store_memory=100 * 1024**2),
        "eu-1": cluster.add_node(num_cpus=2, labels={"region": "eu"}, object_store_memory=100 * 1024**2),
    }
    cluster.wait_for_nodes()
    yield cluster, nodes
    cluster.shutdown()


@pytest.fixture(scope="module")
def ray_module(cluster, shared_ray):
    """Overrides the single-node Ray of the other modules: the driver joins the labelled cluster."""
    with shared_ray.own(lambda: ray.init(address=cluster[0].address, namespace="freshvec-tests")):
        yield


@pytest.fixture(scope="module")
def eu_broker(tmp_path_factory):
    from freshvec.deploy.local.kafka.broker import KafkaBroker

    broker = KafkaBroker(port=_free_port(), controller_port=_free_port(),
                         state_dir=tmp_path_factory.mktemp("kafka-eu"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def serve_config():
    from freshvec.core.config import parse_config

    # The embedder stays on the head (role=embed), so removing region nodes never takes it away.
    return parse_config({"http": {"port": _free_port()},
                         "embedding": {"threads": 2, "num_cpus": 1, "label_selector": {"role": "embed"}}})


@pytest.fixture
def region_env(serve_app, kafka, eu_broker):
    from freshvec.core.config import parse_config

    suffix = uuid.uuid4().hex[:8]
    topic = f"reg-{suffix}"
    cfg = parse_config({
        "kafka": {"topics": [topic], "group_id": f"reg-{suffix}", "partitions_if_created": 3},
        "weaviate": {"collection": f"Reg{suffix}"},
        "pipeline": {"dlq_topic": f"{topic}.dlq"},
        "regions": {"us": {"bootstrap_servers": [kafka.bootstrap_servers]},
                    "eu": {"bootstrap_servers": [eu_broker.bootstrap_servers]}},
    })
    env = Env(cfg, serve_app, 3)
    env.start()
    yield env
    env.stop()


def _producer(bootstrap: str):
    from kafka import KafkaProducer

    return KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks=1)


def _send(bootstrap: str, topic: str, docs: dict[str, str]) -> None:
    import json

    producer = _producer(bootstrap)
    for key, text in docs.items():
        producer.send(topic, key=key.encode(), value=json.dumps({"text": text}).encode())
    producer.flush()
    producer.close()


def _placement() -> dict[str, str]:
    """consumer actor name -> node id of its alive instance, from Ray's state API."""
    from ray.util.state import list_actors

    return {a.name: a.node_id for a in list_actors(filters=[("class_name", "=", "PartitionConsumer"),
                                                            ("state", "=", "ALIVE")], limit=1000)}


def _region_of_nodes() -> dict[str, str | None]:
    return {n["NodeID"]: n["Labels"].get("region") for n in ray.nodes() if n["Alive"]}


def _all_placed_in_region(env) -> dict[str, str] | None:
    placed = _placement()
    mine = {name: node for name, node in placed.items() if name.endswith(tuple(f":{env.topic}:{p}" for p in range(3)))}
    if len(mine) != 6:
        return None
    regions = _region_of_nodes()
    for name, node in mine.items():
        assert regions.get(node) == name.split(":")[1], f"{name} runs on a node of region {regions.get(node)}"
    return mine


def test_consumers_run_in_their_region_and_both_regions_land(region_env, kafka, eu_broker):
    env = region_env
    placed = wait_until(lambda: _all_placed_in_region(env), 240, "six consumers placed")
    assert sorted(placed) == sorted(f"consumer:{r}:{env.topic}:{p}" for r in ("us", "eu") for p in range(3))

    us_docs = {f"us-{i}": f"a document written in the us region, number {i}" for i in range(15)}
    eu_docs = {f"eu-{i}": f"a document written in the eu region, number {i}" for i in range(15)}
    _send(kafka.bootstrap_servers, env.topic, us_docs)
    _send(eu_broker.bootstrap_servers, env.topic, eu_docs)
    wait_until(lambda: env.texts_by_key() == {**us_docs, **eu_docs}, 90, "documents of both regions")


def test_losing_a_node_moves_its_consumers_within_the_region(region_env, cluster, kafka, eu_broker):
    env = region_env
    placed = wait_until(lambda: _all_placed_in_region(env), 240, "six consumers placed")
    _, nodes = cluster
    us_nodes = {nodes["us-1"].node_id: "us-1", nodes["us-2"].node_id: "us-2"}
    busiest = max(us_nodes, key=lambda n: sum(node == n for node in placed.values()))
    moved = [name for name, node in placed.items() if node == busiest]
    assert moved, "no us consumer to move"

    first = {f"before-{i}": f"written before the node loss {i}" for i in range(10)}
    _send(kafka.bootstrap_servers, env.topic, first)
    cluster[0].remove_node(nodes[us_nodes[busiest]])
    survivor = next(n for n in us_nodes if n != busiest)

    def moved_to_survivor():
        now = _all_placed_in_region(env)  # also asserts nobody left its region
        return now if now and all(now[name] == survivor for name in moved) else None

    wait_until(moved_to_survivor, 180, "the lost node's consumers restarted on the other us node")
    second = {f"after-{i}": f"written after the node loss {i}" for i in range(10)}
    eu_more = {f"eu-after-{i}": f"eu document after the node loss {i}" for i in range(5)}
    _send(kafka.bootstrap_servers, env.topic, second)
    _send(eu_broker.bootstrap_servers, env.topic, eu_more)
    wait_until(lambda: env.texts_by_key() == {**first, **second, **eu_more}, 120, "nothing lost")
