"""The simulated two-region layout, as the README says to start it: `make sim-up` makes test hosts in
network namespaces with sshd, a Kafka broker per region, Weaviate and a delayed WAN between the
regions; `make sim-down` leaves no namespace, link or process behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_sim_down_leaves_nothing_behind(sim):
    """Last in the module: down, nothing of ours left; the fixture's own down then finds nothing to do."""
    _make("sim-down", 300)
    namespaces, links = _ours()
    assert not namespaces and not links, (namespaces, links)
    procs = subprocess.run(["pgrep", "-af", "fvsim-|\\.run/sim"], capture_output=True, text=True).stdout
    assert not [p for p in procs.splitlines() if "pgrep" not in p], procs
