"""make sim-regions: what placing the consumers next to their broker buys, on two simulated regions.

    make sim-regions      (starts the simulated layout with `make sim-up` when it is not up)

On deploy/sim's layout (two regions, 40 ms round trip between them through Toxiproxy) events
originate in region a: RATE events/s for DURATION_S seconds, produced to broker A. Two phases, one
Ray cluster at a time (launched with `ray up` from `freshvec cluster-yaml --provider local`):
  in_region     region a's pipeline on region a's cluster: broker A and Weaviate (on a-head) local;
  cross_region  the same pipeline with its consumers' label selector pointing at region b, on region
                b's cluster: broker A and Weaviate across the WAN;
  kafka_across, weaviate_across   on region a's cluster, one of the two reached through the WAN proxy:
                where the cross-region time goes.
Each is a Ray job (bench/region_job.py) that records every event's freshness after WARMUP events.
Writes bench/results/regions.json and regions.png.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import yaml

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import RESULTS, drop_run_state, pct, sentences, write_json  # noqa: E402
from freshvec.core.config import parse_config  # noqa: E402
from freshvec.deploy.sim import clusters, layout  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RATE = float(os.environ.get("BENCH_REGIONS_RATE", 50))
DURATION_S = float(os.environ.get("BENCH_REGIONS_S", 60))
WARMUP = int(os.environ.get("BENCH_REGIONS_WARMUP", 100))


# key: (cluster the pipeline runs on, how it reaches broker A, how it reaches Weaviate): the two
# placements, and in between each WAN path alone, which says where the cross-region time goes.
PHASES = {
    "in_region": ("a", "a", "a"),
    "kafka_across": ("a", "b", "a"),
    "weaviate_across": ("a", "a", "b"),
    "cross_region": ("b", "b", "b"),
}


def phase_config(run_in: str, name: str, kafka_via: str | None = None, weaviate_via: str | None = None) -> dict:
    """Region a's pipeline on `run_in`'s nodes, with a topic, group and collection of its own; broker A
    and Weaviate reached as region `kafka_via` / `weaviate_via` reaches them (default: `run_in`)."""
    data = layout.freshvec_config(layout.region("a"), layout.region(run_in))
    if kafka_via:
        bootstrap = [layout.endpoints(layout.region(kafka_via)).kafka["a"]]
        data["kafka"]["bootstrap_servers"] = data["regions"]["a"]["bootstrap_servers"] = bootstrap
    if weaviate_via:
        data["weaviate"] = layout.freshvec_config(layout.region("a"), layout.region(weaviate_via))["weaviate"]
    topic = f"regions-{name}"
    data["kafka"].update(topics=[topic], group_id=topic)
    data["pipeline"]["dlq_topic"] = f"{topic}.dlq"
    data["weaviate"]["collection"] = "Regions" + name.replace("-", "")
    return data


def count(cfg, keys: list[str]) -> int:
    from freshvec.core.records import object_id
    from freshvec.core.store import connect

    with connect(cfg.weaviate) as client:
        docs = client.collections.use(cfg.weaviate.collection)
        return sum(docs.data.exists(object_id(cfg.kafka.topics[0], k)) for k in keys)


def wait_found(cfg, keys: list[str], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while (found := count(cfg, keys)) < len(keys) and time.monotonic() < deadline:
        time.sleep(1)
    return found


def measure(name: str, run_in: str, kafka_via: str, weaviate_via: str) -> dict:
    """RATE events/s for DURATION_S from region a, with the pipeline on `run_in`'s cluster."""
    from freshvec.cluster.producer import produce

    data = phase_config(run_in, name, kafka_via, weaviate_via)
    folder = layout.state_dir() / "bench" / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    config = folder / "freshvec.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    # Produced and checked from this machine, which reaches broker A and Weaviate directly.
    here = parse_config(phase_config("a", name))
    job = clusters.submit(run_in, f"regions-{name}", [str(clusters.BIN / "python"), str(ROOT / "bench" / "region_job.py"),
                                                      str(config), str(folder)])
    client = clusters.jobs(run_in)
    try:
        deadline = time.monotonic() + 300
        while not (folder / "ready").exists():
            if time.monotonic() > deadline or str(client.get_job_status(job)) in clusters.DONE:
                raise RuntimeError(f"{name}: the pipeline did not start:\n{client.get_job_logs(job)[-3000:]}")
            time.sleep(1)
        warm = [(f"warm-{i}", {"text": t}) for i, t in enumerate(sentences(WARMUP, seed=3))]
        produce(here, warm, rate=RATE, total=len(warm), progress=False)
        wait_found(here, [k for k, _ in warm], 120)
        (folder / "measure").write_text("")
        while not (folder / "measuring").exists():  # the warm-up's latencies drained and dropped
            time.sleep(0.1)
        n = int(RATE * DURATION_S)
        events = [(f"{name}-{i}", {"text": t}) for i, t in enumerate(sentences(n, seed=11))]
        print(f"{name}: {n} events at {RATE:.0f}/s to broker A, pipeline on region {run_in}", flush=True)
        produce(here, events, rate=RATE, total=n, progress=True)
        lost = n - wait_found(here, [k for k, _ in events], 120)
    finally:
        (folder / "stop").write_text("")
        status = clusters.wait_job(run_in, job, 120)
        drop_run_state(here)
    if not (folder / "result.json").exists():
        raise RuntimeError(f"{name}: job {status} wrote no result:\n{client.get_job_logs(job)[-3000:]}")
    result = json.loads((folder / "result.json").read_text())
    lat = result["latencies_ms"]
    print(f"{name}: job {status}; p50 {pct(lat, 50):.1f} ms, p99 {pct(lat, 99):.1f} ms over {len(lat)} events, "
          f"lost {lost}", flush=True)
    return {"p50_ms": round(pct(lat, 50), 1), "p99_ms": round(pct(lat, 99), 1), "lost": lost, "events": n,
            "records_per_batch": result.get("records_per_batch"), "consumers": result["consumers"],
            "nodes": result["nodes"], "latencies_ms": lat}


def rtt_ms() -> dict:
    """Kafka round trips from region b's worker: to broker B (within) and to broker A (across)."""
    ends = layout.endpoints(layout.region("b"))
    worker = layout.region("b").worker
    proc = subprocess.run(["ip", "netns", "exec", worker.namespace, sys.executable, "-m", "freshvec.deploy.sim.probe",
                           "kafka", ends.kafka["b"], "kafka", ends.kafka["a"]],
                          capture_output=True, text=True, timeout=60, check=True)
    within, across = (json.loads(line)["median_ms"] for line in proc.stdout.splitlines()[:2])
    return {"within": round(within, 2), "across": round(across, 2)}


def plot(series: dict[str, list[float]], path: Path, rtt: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, values in series.items():
        v = np.sort(np.asarray(values))
        ax.plot(v, np.arange(1, len(v) + 1) / len(v),
                label=f"{label}: p50 {pct(v, 50):.0f} ms, p99 {pct(v, 99):.0f} ms")
    ax.set_xscale("log")
    ax.set_xlabel("freshness: record timestamp -> Weaviate ack (ms)")
    ax.set_ylabel("fraction of events")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(f"{RATE:.0f} events/s from region a: consumers in region a vs in region b ({rtt:.0f} ms RTT away)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    started = time.monotonic()
    if not (layout.state_dir() / "layout.json").exists():
        subprocess.run(["make", "--no-print-directory", "sim-up"], cwd=ROOT, check=True)
    rtt = rtt_ms()
    print(f"Kafka round trip from region b: within {rtt['within']} ms, across {rtt['across']} ms", flush=True)
    suffix = uuid.uuid4().hex[:6]
    results = {}
    for cluster in ("a", "b"):
        print(f"ray up region {cluster} ...", flush=True)
        try:
            clusters.up(cluster)
            for key, (run_in, kafka_via, weaviate_via) in PHASES.items():
                if run_in == cluster:
                    results[key] = measure(f"{key.replace('_', '')}-{suffix}", run_in, kafka_via, weaviate_via)
        finally:
            print(f"ray down region {cluster} ...", flush=True)
            clusters.down(cluster)
    nodes = {n["ip"]: n["labels"] for r in results.values() for n in r["nodes"]}
    out = {"rtt_ms": rtt["across"], "rtt_within_ms": rtt["within"], "rate_eps": RATE, "duration_s": DURATION_S,
           **{key: {k: r[k] for k in ("p50_ms", "p99_ms", "lost", "events", "records_per_batch", "consumers")}
              for key, r in results.items()},
           "nodes": [{"ip": ip, "labels": labels} for ip, labels in sorted(nodes.items())],
           "took_s": round(time.monotonic() - started)}
    path = write_json("regions.json", out)
    plot({"consumers in region a": results["in_region"]["latencies_ms"],
          "in region a, broker A across the WAN": results["kafka_across"]["latencies_ms"],
          "in region a, Weaviate across the WAN": results["weaviate_across"]["latencies_ms"],
          "consumers in region b": results["cross_region"]["latencies_ms"]}, RESULTS / "regions.png", rtt["across"])
    print(json.dumps(out, indent=2))
    print(f"wrote {path} and {RESULTS / 'regions.png'}")


if __name__ == "__main__":
    main()
