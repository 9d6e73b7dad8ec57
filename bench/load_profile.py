"""Where the time and the CPU go at a given event rate: freshvec on the local config, one steady phase
per rate, and for each: the cores each kind of process used, records per embed call and per
Weaviate write, the mean time of those two stages (the consumers' stage timers), and freshness.

    .venv/bin/python bench/load_profile.py     (BENCH_PROFILE_RATES=20,50,100, BENCH_PROFILE_S=20)

CPU is psutil's user+system time of every process of a kind over the phase's middle (the first and
last 2 s left out), divided by its length: 1.0 is one core busy. The stage timers are read from the
Prometheus endpoint the consumers' metrics go to (sum and count of each histogram, before and after).
Writes bench/results/load_profile.json.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from collections import defaultdict

import psutil

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import bench_config, drop_run_state, pct, sentences, write_json  # noqa: E402
from bench.freshness import collect, produce_at  # noqa: E402
from freshvec.cluster import ray_env  # noqa: E402

RATES = [float(r) for r in os.environ.get("BENCH_PROFILE_RATES", "20,50,100").split(",")]
PHASE_S = float(os.environ.get("BENCH_PROFILE_S", 20))
KINDS = [("consumers", "ray::PartitionConsumer"), ("replicas", "ray::ServeReplica"),
         ("serve controller", "ray::ServeController"), ("haproxy", "haproxy"), ("kafka", "kafka.Kafka"),
         ("weaviate", "weaviate-server"), ("raylet", "raylet"), ("gcs", "gcs_server"),
         ("ray agents", "agent.py"), ("ray other", "ray::")]


def _kind(proc: psutil.Process) -> str | None:
    if proc.pid == os.getpid():
        return "benchmark (producer)"
    try:
        line = " ".join(proc.cmdline()) or proc.name()
    except psutil.Error:
        return None
    return next((kind for kind, marker in KINDS if marker in line), None)


def cpu_by_kind() -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for proc in psutil.process_iter():
        kind = _kind(proc)
        if kind:
            try:
                t = proc.cpu_times()
                out[kind] += t.user + t.system
            except psutil.Error:
                pass
    return out


def stage_metrics() -> dict[str, float]:
    """Sum and count of the stage-latency and batch-size histograms, per stage, over all consumers."""
    import requests
    import ray

    out: dict[str, float] = defaultdict(float)
    try:
        port = ray._private.worker.global_worker.node.metrics_export_port
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    except Exception as exc:  # no metrics agent: CPU and batch sizes still tell most of it
        print(f"stage timers unavailable: {exc}", flush=True)
        return out
    for name in ("ray_freshvec_stage_latency_ms", "ray_freshvec_batch_size"):
        for m in re.finditer(rf'^{name}_(sum|count)\{{([^}}]*)\}} ([0-9.e+-]+)$', text, re.M):
            stage = re.search(r'stage="([^"]+)"', m.group(2)).group(1)
            out[f"{name}:{stage}:{m.group(1)}"] += float(m.group(3))
    return out


def main() -> None:
    import ray

    from bench.freshness import Freshvec

    ray_env.apply_local()
    cfg = bench_config("profile")
    pipeline = Freshvec(cfg)
    results = []
    try:
        produce_at(cfg, sentences(50, seed=4), 25, "warmup")
        collect(pipeline, 50, 120, "warm-up")
        for rate in RATES:
            n = int(rate * PHASE_S)
            producer = threading.Thread(target=produce_at, args=(cfg, sentences(n, seed=int(rate)), rate, f"r{rate:g}"))
            stats0 = ray.get([h.stats.remote() for h in pipeline.supervisor.consumers().values()])
            producer.start()
            time.sleep(2)
            cpu0, metrics0, t0 = cpu_by_kind(), stage_metrics(), time.monotonic()
            time.sleep(PHASE_S - 4)
            cpu1, metrics1, t1 = cpu_by_kind(), stage_metrics(), time.monotonic()
            latencies, _ = collect(pipeline, n, PHASE_S + 120, f"{rate:g} ev/s")
            producer.join()
            stats1 = ray.get([h.stats.remote() for h in pipeline.supervisor.consumers().values()])
            d = {k: metrics1[k] - metrics0.get(k, 0.0) for k in metrics1}
            stages = {}
            for stage in ("embed", "upsert"):
                count = d.get(f"ray_freshvec_stage_latency_ms:{stage}:count", 0)
                stages[stage] = {"calls_per_s": count / (t1 - t0),
                                 "mean_ms": d.get(f"ray_freshvec_stage_latency_ms:{stage}:sum", 0) / count if count else None,
                                 "records_per_call": d.get(f"ray_freshvec_batch_size:{stage}:sum", 0) / count if count else None}
            batches = sum(s.batches for s in stats1) - sum(s.batches for s in stats0)
            consumed = sum(s.consumed for s in stats1) - sum(s.consumed for s in stats0)
            cores = {k: round((cpu1[k] - cpu0.get(k, 0.0)) / (t1 - t0), 3) for k in sorted(cpu1, key=lambda k: -cpu1[k])}
            row = {"rate_eps": rate, "p50_ms": pct(latencies, 50), "p99_ms": pct(latencies, 99),
                   "records_per_batch": consumed / batches if batches else None, "stages": stages,
                   "cores_used": {k: v for k, v in cores.items() if v > 0.005},
                   "cores_used_total": round(sum(cores.values()), 3),
                   "cpu_ms_per_event": round(1000 * sum(cores.values()) / rate, 2)}
            results.append(row)
            print(json.dumps(row), flush=True)
    finally:
        pipeline.close()
        drop_run_state(cfg)
    path = write_json("load_profile.json", {"phase_s": PHASE_S, "cores": os.cpu_count(), "rates": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
