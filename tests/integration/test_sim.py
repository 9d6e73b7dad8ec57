"""The simulated two-region layout, as the README says to start it: `make sim-up` makes test hosts in
network namespaces with sshd, a Kafka broker per region, Weaviate and a delayed WAN between the
regions; `ray up` launches a region's Ray cluster onto its hosts and the pipeline runs there as a Ray
job; `make sim-down` leaves no namespace, link or process behind."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from ray.util.state import list_actors, list_nodes

from tests.integration.conftest import wait_until

pytestmark = pytest.mark.timeout(900)

ROOT = Path(__file__).resolve().parents[2]


def _make(target: str, timeout: float) -> str:
    proc = subprocess.run(["make", "--no-print-directory", target], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return proc.stdout


def _ours() -> tuple[str, str]:
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return ("\n".join(n for n in namespaces.splitlines() if n.startswith("fvsim-")),
            "\n".join(line for line in links.splitlines() if "fvsim-" in line))


def _in_host(namespace: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", namespace, *argv], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def sim(shared_ray):
    shared_ray.release()  # a Ray in this process would be one more cluster on two cores
    try:
        _make("sim-up", 900)
        from freshvec.deploy.local import paths

        yield json.loads((paths.state_dir() / "sim" / "layout.json").read_text())
    finally:
        _make("sim-down", 300)


def test_hosts_answer_ssh_with_the_generated_key(sim):
    for region in sim["regions"].values():
        for name, address in region["hosts"].items():
            proc = subprocess.run(["ssh", "-F", sim["ssh"]["config"], "-o", "BatchMode=yes", name,
                                   "hostname && ip -4 -o addr show eth0"], capture_output=True, text=True, timeout=60)
            assert proc.returncode == 0, proc.stderr
            assert proc.stdout.splitlines()[0] == name and address in proc.stdout


def test_a_broker_across_regions_is_reached_through_the_delayed_path(sim):
    b = sim["regions"]["b"]
    worker = "fvsim-" + next(n for n in b["hosts"] if "worker" in n)
    probe = _in_host(worker, sys.executable, "-m", "freshvec.deploy.sim.probe",
                     "kafka", b["kafka"]["b"], "kafka", b["kafka"]["a"])
    within, across = (json.loads(line)["median_ms"] for line in probe.stdout.splitlines()[:2])
    assert across >= 2 * sim["wan"]["latency_ms_each_way"] * 0.9 > within, (within, across)

    # A record produced in region b to broker A (through the proxy) is read back in region a.
    script = (
        "import sys, uuid; from confluent_kafka import Consumer, Producer\n"
        "bootstrap, topic, key = sys.argv[1], 'sim-check', uuid.uuid4().hex\n"
        "p = Producer({'bootstrap.servers': bootstrap}); p.produce(topic, key=key, value=b'across'); p.flush(30)\n"
        "print(key)\n")
    produced = _in_host(worker, sys.executable, "-c", script, b["kafka"]["a"])
    assert produced.returncode == 0, produced.stderr
    key = produced.stdout.strip()
    a = sim["regions"]["a"]
    reader = (
        "import sys; from confluent_kafka import Consumer\n"
        "c = Consumer({'bootstrap.servers': sys.argv[1], 'group.id': 'sim-check', 'auto.offset.reset': 'earliest'})\n"
        "c.subscribe(['sim-check']); seen = set()\n"
        "for _ in range(60):\n"
        "    m = c.poll(1.0)\n"
        "    if m is not None and not m.error(): seen.add(m.key().decode())\n"
        "    if sys.argv[2] in seen: break\n"
        "print(sys.argv[2] in seen); c.close()\n")
    head = "fvsim-" + next(n for n in a["hosts"] if "head" in n)
    read = _in_host(head, sys.executable, "-c", reader, a["kafka"]["a"], key)
    assert read.stdout.strip().endswith("True"), read.stdout + read.stderr


def test_weaviate_answers_from_the_other_region(sim):
    b = sim["regions"]["b"]
    worker = "fvsim-" + next(n for n in b["hosts"] if "worker" in n)
    url = b["weaviate_http"] + "/v1/.well-known/ready"
    proc = _in_host(worker, sys.executable, "-c",
                    f"import httpx; print(httpx.get({url!r}, timeout=10, trust_env=False).status_code)")
    assert proc.stdout.strip() == "200", proc.stdout + proc.stderr


def test_ray_up_launches_region_a_and_its_pipeline_ingests_from_broker_a(sim):
    """The README's commands for one region: `freshvec cluster-yaml --provider local`, `ray up`, the
    pipeline submitted as a Ray job (`freshvec run`), the demo produced to the region's broker, found
    in Weaviate and by /search on the head, `ray down`, the worker's Ray stopped."""
    from freshvec.cluster.corpus import demo_documents
    from freshvec.core.config import load_config
    from freshvec.core.records import object_id
    from freshvec.core.store import connect
    from freshvec.deploy.sim import clusters

    region = sim["regions"]["a"]
    bin_dir = Path(sys.executable).parent
    cfg = load_config(region["config"])  # this machine reaches region a's broker and Weaviate directly
    try:
        nodes = clusters.up("a")
        assert sorted(n["ip"] for n in nodes) == sorted([region["head_ip"], *region["worker_ips"]]), nodes
        assert all(n["labels"].get("region") == "a" for n in nodes), nodes

        job = clusters.submit("a", f"sim-rayup-{uuid.uuid4().hex[:8]}",
                              [str(bin_dir / "freshvec"), "-c", region["config"], "run", "--status-interval", "5"])
        client = clusters.jobs("a")
        wait_until(lambda: "freshvec: running" in client.get_job_logs(job)
                   or str(client.get_job_status(job)) in clusters.DONE, 300, "the pipeline running on region a")
        assert "freshvec: running" in client.get_job_logs(job), client.get_job_logs(job)[-3000:]
        consumers = wait_until(lambda: [a for a in list_actors(address=clusters.dashboard("a"))
                                        if a.class_name == "PartitionConsumer" and a.state == "ALIVE"], 60,
                               "consumer actors alive on the cluster")
        node_ips = {n.node_id: n.node_ip for n in list_nodes(address=clusters.dashboard("a"))}
        assert {node_ips[c.node_id] for c in consumers} <= {region["head_ip"], *region["worker_ips"]}

        produced = subprocess.run([str(bin_dir / "freshvec"), "-c", region["config"], "produce", "--demo", "100"],
                                  capture_output=True, text=True, timeout=120)
        assert produced.returncode == 0, produced.stderr[-2000:]
        keys = [key for key, _ in demo_documents(100)]
        with connect(cfg.weaviate) as weaviate:
            docs = weaviate.collections.use(cfg.weaviate.collection)
            found = wait_until(lambda: (n := sum(docs.data.exists(object_id(cfg.kafka.topics[0], k)) for k in keys))
                               == 100 and n, 180, "the 100 demo documents in Weaviate")
        assert found == 100
        answer = httpx.post(f"http://{region['head_ip']}:8000/search", json={"query": "the assert statement", "k": 3},
                            timeout=30, trust_env=False)
        assert answer.status_code == 200, answer.text
        assert [r["metadata"]["topic"] for r in answer.json()["results"]][0] == "assert", answer.text
        client.stop_job(job)
        assert clusters.wait_job("a", job, 120) == "STOPPED"
    finally:
        clusters.down("a")
    wait_until(lambda: not _answers(clusters.dashboard("a")), 60, "region a's dashboard gone after ray down")
    for name in region["hosts"]:
        left = subprocess.run(["ssh", "-F", sim["ssh"]["config"], "-o", "BatchMode=yes", name, "pgrep -a raylet"],
                              capture_output=True, text=True, timeout=60).stdout
        assert not left, f"Ray still runs on {name} after ray down: {left}"


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2, trust_env=False).status_code < 500
    except httpx.HTTPError:
        return False


def test_sim_down_leaves_nothing_behind(sim):
    """Last in the module: down, nothing of ours left; the fixture's own down then finds nothing to do."""
    _make("sim-down", 300)
    namespaces, links = _ours()
    assert not namespaces and not links, (namespaces, links)
    procs = subprocess.run(["pgrep", "-af", "fvsim-|\\.run/sim"], capture_output=True, text=True).stdout
    assert not [p for p in procs.splitlines() if "pgrep" not in p], procs
