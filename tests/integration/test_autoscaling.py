"""Replicas follow the load on real Ray, Serve, Kafka and Weaviate: HTTP clients under Serve's request
policy, a Kafka backlog under the backlog policy. Short delays; the counts are what Serve reports."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.integration.conftest import wait_until

pytestmark = pytest.mark.timeout(420)

PORT = 18100


def config(target_ongoing_requests: float):
    """1 to 2 single-threaded replicas that react within seconds, under the backlog policy (which is
    Serve's request policy while no consumer reports a backlog)."""
    from freshvec.core.config import parse_config

    return parse_config({
        "http": {"port": PORT},
        "embedding": {"num_cpus": 0.5, "threads": 1, "autoscaling": {
            "min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": target_ongoing_requests,
            "upscale_delay_s": 1, "downscale_delay_s": 4, "metrics_interval_s": 0.5, "look_back_period_s": 2,
            "policy": "backlog", "catch_up_s": 5}},
    })


@pytest.fixture(scope="module")
def serve_config():
    return config(target_ongoing_requests=2)


def replicas(states: tuple[str, ...] = ("RUNNING",)) -> int:
    from ray import serve

    from freshvec.core.identity import APP_NAME, DEPLOYMENT_NAME

    app = serve.status().applications[APP_NAME]
    return sum(app.deployments[DEPLOYMENT_NAME].replica_states.get(state, 0) for state in states)


class Clients:
    """`n` HTTP clients posting one text each, back to back; every answer that is not a 200 counts."""

    def __init__(self, n: int):
        self.n, self.stop, self.ok, self.failed = n, threading.Event(), 0, []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(n)]

    def _run(self):
        with httpx.Client(base_url=f"http://127.0.0.1:{PORT}", timeout=30) as http:
            while not self.stop.is_set():
                try:
                    r = http.post("/embed", json={"texts": ["autoscaling keeps up with the load"]})
                    if r.status_code == 200:
                        self.ok += 1
                    else:
                        self.failed.append(f"{r.status_code} {r.text[:200]}")
                except httpx.HTTPError as exc:
                    self.failed.append(repr(exc))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(30)


def test_http_load_adds_a_replica_and_its_end_removes_it_without_a_failed_request(serve_app):
    assert wait_until(lambda: replicas() == 1, 60, "one replica at rest")
    with Clients(16) as load, Clients(1) as steady:
        wait_until(lambda: replicas() >= 2, 120, "a second replica under 16 clients", interval=0.5)
        load.stop.set()  # the burst ends; one client goes on through the scale-down
        for t in load.threads:
            t.join(30)
        wait_until(lambda: replicas() == 1, 120, "back to one replica after the load", interval=0.5)
        time.sleep(2)
    assert load.ok > 0 and steady.ok > 0
    assert load.failed == [] and steady.failed == [], (load.failed + steady.failed)[:5]


def test_a_backlog_adds_a_replica_that_requests_would_not_and_every_event_lands_once(serve_app, make_env, shared_ray):
    """4,000 events wait in Kafka before the consumers start: at most a few calls are ever in flight,
    and with a target of 50 per replica only the backlog can ask for the second replica."""
    from freshvec.cluster.pipeline import deploy_serve
    from freshvec.serve.autoscaling import read_decision

    deploy_serve(config(target_ongoing_requests=50))
    shared_ray.invalidate()  # this app is not the module's serve_config
    assert wait_until(lambda: replicas() == 1, 120, "one replica at rest")
    env = make_env(partitions=4, start=False)
    docs = {f"doc-{i}": f"backlog document number {i} about autoscaling on the kafka lag" for i in range(4000)}
    for key, text in docs.items():
        env.send_doc(key, text)
    env.flush()
    env.start()
    # A second replica created (starting counts: on two busy cores the backlog may drain before it runs).
    wait_until(lambda: replicas(("STARTING", "RUNNING")) >= 2, 120, "a second replica for the backlog", interval=0.5)
    decision = read_decision()
    assert decision is not None and decision.source == "backlog" and decision.requested < 2, decision
    wait_until(lambda: len(env.texts_by_key()) == len(docs), 240, "every event in Weaviate", interval=2)
    objects = env.objects()
    assert len(objects) == len(docs) and {o.properties["doc_id"] for o in objects} == set(docs)
    assert sum(s.dead_lettered for s in env.stats()) == 0
