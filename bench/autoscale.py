"""Autoscaling benchmark: idle -> burst (a Kafka backlog plus HTTP clients) -> idle, once per policy.

    make bench-autoscale      (the local stack must be set up; the target starts it)

The same profile runs under four settings of the local config's embedding deployment: `backlog` and
`requests` (1 to 3 replicas), fixed at the minimum (1) and fixed at the maximum (3). Every second it
samples the running replicas, Serve's target, the consumers' total lag, the ingest rate, the HTTP p99
of that second and the freshness p99 of that second. Reported per setting: seconds from the burst to
the first added replica, seconds from drained to back at the minimum, time to drain, replica-seconds
used, failed HTTP requests and lost events. On a 2-core machine more replicas cannot add compute:
the figures show the decisions and their timing, not a speed-up. Writes bench/results/autoscale.json
and autoscale.png.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import RESULTS, bench_config, drop_run_state, pct, sentences, write_json  # noqa: E402
from freshvec.cluster import ray_env  # noqa: E402
from freshvec.core.config import load_config  # noqa: E402

EVENTS = int(os.environ.get("BENCH_AUTOSCALE_EVENTS", 6000))
CLIENTS = int(os.environ.get("BENCH_AUTOSCALE_CLIENTS", 8))
HTTP_S = float(os.environ.get("BENCH_AUTOSCALE_HTTP_S", 20))
IDLE_S = float(os.environ.get("BENCH_AUTOSCALE_IDLE_S", 10))
SETTLE_S = float(os.environ.get("BENCH_AUTOSCALE_SETTLE_S", 90))  # most time to wait for the way back to min
SETTINGS = {
    "backlog": {"policy": "backlog"},
    "requests": {"policy": "requests"},
    "fixed-min": {"policy": "requests", "min_replicas": 1, "max_replicas": 1},
    "fixed-max": {"policy": "requests", "min_replicas": 3, "max_replicas": 3},
}


def serve_replicas() -> tuple[int, int | None]:
    """(running, target) replicas of the embedder."""
    from ray import serve

    from freshvec.cluster.status import _target_replicas
    from freshvec.core.identity import APP_NAME, DEPLOYMENT_NAME

    app = serve.status().applications[APP_NAME]
    return app.deployments[DEPLOYMENT_NAME].replica_states.get("RUNNING", 0), _target_replicas()


class Clients:
    """HTTP clients on /embed; latencies stamped with the second they ended in."""

    def __init__(self, port: int, n: int):
        self.port, self.n, self.stop = port, n, threading.Event()
        self.latencies: list[tuple[float, float]] = []
        self.failed = 0
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(n)]

    def _run(self, i: int) -> None:
        import httpx

        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=60) as http:
            n = 0
            while not self.stop.is_set():
                n += 1
                t0 = time.perf_counter()
                try:
                    ok = http.post("/embed", json={"texts": [f"client {i} request {n} about autoscaling"]}).status_code == 200
                except Exception:
                    ok = False
                if ok:
                    self.latencies.append((time.time(), (time.perf_counter() - t0) * 1000))
                else:
                    self.failed += 1

    def start(self) -> Clients:
        for t in self.threads:
            t.start()
        return self

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)


def run(name: str, info) -> dict:
    import ray

    from freshvec.cluster.pipeline import deploy_serve, start_pipeline
    from freshvec.cluster.producer import produce

    cfg = bench_config("auto", SETTINGS[name])
    auto = cfg.embedding.autoscaling
    deploy_serve(cfg)
    supervisor = start_pipeline(cfg, info)
    handles = list(supervisor.consumers().values())
    while not all(s.state == "running" for s in ray.get([h.stats.remote() for h in handles])):
        time.sleep(0.5)
    while serve_replicas()[0] != auto.min_replicas:  # the previous setting's replicas are gone
        time.sleep(1)
    samples, clients, t0 = [], None, time.time()
    burst_at = drained_at = back_at_min = first_added = None
    texts = sentences(EVENTS, seed=11)
    last_consumed = 0
    print(f"[{name}] idle {IDLE_S:.0f} s, then {EVENTS} events at once and {CLIENTS} HTTP clients for {HTTP_S:.0f} s",
          flush=True)
    try:
        while True:
            now = time.time() - t0
            if burst_at is None and now >= IDLE_S:
                burst_at = now
                threading.Thread(target=produce, args=(cfg, ((f"k{i}", {"text": t}) for i, t in enumerate(texts))),
                                 kwargs={"total": EVENTS}, daemon=True).start()
                clients = Clients(cfg.http.port, CLIENTS).start()
            if clients is not None and not clients.stop.is_set() and now - burst_at >= HTTP_S:
                clients.finish()
            stats = ray.get([h.stats.remote() for h in handles])
            fresh = [x for h in handles for x in ray.get(h.drain_latencies.remote())]
            consumed = sum(s.consumed for s in stats)
            running, target = serve_replicas()
            lag = sum(s.lag or 0 for s in stats)
            http = [ms for at, ms in (clients.latencies if clients else []) if at >= time.time() - 1]
            samples.append({"t": round(now, 1), "replicas": running, "target": target, "lag": lag,
                            "ingest_eps": consumed - last_consumed, "http_p99_ms": pct(http, 99),
                            "freshness_p99_ms": pct(fresh, 99)})
            last_consumed = consumed
            if burst_at is not None and first_added is None and running > auto.min_replicas:
                first_added = now - burst_at
            if burst_at is not None and drained_at is None and consumed >= EVENTS and clients.stop.is_set():
                drained_at = now
            if drained_at is not None and running == auto.min_replicas and back_at_min is None:
                back_at_min = now - drained_at
            print(f"[{name}] t={now:5.0f}s replicas {running} (target {target}) lag {lag:6d} "
                  f"ingest {samples[-1]['ingest_eps']:4d} ev/s consumed {consumed}/{EVENTS}", flush=True)
            if drained_at is not None and (back_at_min is not None or now - drained_at >= SETTLE_S):
                break
            if burst_at is not None and now - burst_at > 600:
                raise RuntimeError(f"{name}: not drained after 600 s")
            time.sleep(max(0.0, 1.0 - (time.time() - t0 - now)))
        from freshvec.core.store import connect

        with connect(cfg.weaviate) as client:
            landed = client.collections.use(cfg.weaviate.collection).aggregate.over_all(total_count=True).total_count
    finally:
        if clients is not None:
            clients.finish()
        supervisor.stop()
        drop_run_state(cfg)
    raised = next((x["t"] - burst_at for x in samples if x["t"] >= burst_at and (x["target"] or 0) > auto.min_replicas),
                  None)
    return {
        "setting": name, "autoscaling": auto.model_dump(),
        # the decision (Serve's target above the minimum), and the replica it asked for running
        "s_to_target_raised": raised, "s_to_first_added_replica": first_added,
        "s_drain": None if drained_at is None else drained_at - burst_at,
        "s_back_at_min_after_drain": back_at_min,
        "replica_seconds": float(sum(s["replicas"] for s in samples)),
        "http_requests": len(clients.latencies), "http_failed": clients.failed,
        "http_p99_ms": pct([ms for _, ms in clients.latencies], 99),
        "events": EVENTS, "lost": EVENTS - landed, "samples": samples,
    }


def plot(results: list[dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 1, figsize=(10, 2.6 * len(results)), sharex=True)
    for ax, r in zip(np.atleast_1d(axes), results):
        t = [s["t"] for s in r["samples"]]
        ax.step(t, [s["replicas"] for s in r["samples"]], where="post", label="replicas", color="tab:blue")
        ax.set_ylabel(f"{r['setting']}\nreplicas"), ax.set_ylim(0, 4)
        lag = ax.twinx()
        lag.plot(t, [s["lag"] for s in r["samples"]], color="tab:orange", label="lag")
        lag.set_ylabel("lag (events)")
    np.atleast_1d(axes)[-1].set_xlabel("seconds")
    fig.suptitle(f"Replicas and Kafka lag: idle, {EVENTS} events + {CLIENTS} HTTP clients, idle (2-core machine)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def replot(path=RESULTS / "autoscale.json") -> None:
    """Draw the PNG again from a results file."""
    plot(json.loads(path.read_text())["settings"], RESULTS / "autoscale.png")


def main() -> None:
    import ray

    from freshvec.cluster.pipeline import deploy_serve

    ray_env.apply_local()
    ray.init(include_dashboard=False, namespace="freshvec-bench")
    info = deploy_serve(load_config("deploy/local/freshvec.yaml"))
    results = [run(name, info) for name in SETTINGS]
    ray.shutdown()
    out = {"events": EVENTS, "clients": CLIENTS, "http_s": HTTP_S, "settings": results}
    path = write_json("autoscale.json", out)
    plot(results, RESULTS / "autoscale.png")
    for r in results:
        print(json.dumps({k: v for k, v in r.items() if k not in ("samples", "autoscaling")}))
    print(f"wrote {path} and {RESULTS / 'autoscale.png'}")


if __name__ == "__main__":
    main()
