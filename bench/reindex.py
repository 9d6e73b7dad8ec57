"""Reindex benchmark: `freshvec reindex` of 20,000 documents to a second model while events stream in
and /search is called.

    make bench-reindex        (the local stack must be set up; the target starts it)

With the local config (sized for this machine), BENCH_REINDEX_DOCS (20,000) documents are ingested,
then events stream at BENCH_REINDEX_RATE (20) ev/s, half updates of existing keys and half new keys,
and /search is called at 5 queries/s. After BENCH_REINDEX_BASELINE_S (30 s) of that, the reindex to a
second model runs (MiniLM with CLS pooling and a 256-dimension projection, built offline:
bench/common.py), then 15 s more. Reported: the backfill's documents/s (every record replayed, over
the time from the shadow's start to caught up), the live stream's freshness p50/p99 before, during and
after, the time from caught up to switched and the switch's own pause, the whole command's time,
searches failed and searches after the switch answered by the old model (target 0 for both), and
the keys not holding their latest text afterwards (target 0). Writes bench/results/reindex.json and reindex.png (live
freshness per second across the run, the phases marked).
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
from pathlib import Path


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import RESULTS, bench_config, build_second_model, drop_run_state, pct, sentences, write_json  # noqa: E402

DOCS = int(os.environ.get("BENCH_REINDEX_DOCS", 20_000))
RATE = float(os.environ.get("BENCH_REINDEX_RATE", 20))
QUERIES_PER_S = 5.0
BASELINE_S = float(os.environ.get("BENCH_REINDEX_BASELINE_S", 30))
AFTER_S = 15.0


class Load:
    """Events at `rate` (updates of the corpus's keys `doc-<i>` and new keys) and /search at
    `queries_per_s`, in threads; remembers each key's latest text, every search's outcome and, when
    given the live consumers, their freshness per second."""

    def __init__(self, cfg, corpus: int, rate: float, queries_per_s: float, api_key: str | None = None):
        from kafka import KafkaProducer

        self.cfg, self.corpus, self.rate, self.queries_per_s = cfg, corpus, rate, queries_per_s
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.producer = KafkaProducer(bootstrap_servers=cfg.kafka.bootstrap_servers, linger_ms=0)
        self.latest: dict[str, str] = {}
        self.searches: list[tuple[float, int, str | None, str]] = []  # (sent at, status, model, body or error)
        self.freshness: list[tuple[float, list[float]]] = []  # (second, latencies acknowledged in it)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def send(self, key: str, text: str) -> None:
        self.producer.send(self.cfg.kafka.topics[0], key=key.encode(), value=json.dumps({"text": text}).encode())
        self.latest[key] = text

    def start(self, consumers=None) -> Load:
        targets = [self._events, self._queries] + ([lambda: self._sample(consumers)] if consumers else [])
        self._threads = [threading.Thread(target=t, daemon=True) for t in targets]
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)
        self.producer.flush(30)

    def _events(self) -> None:
        rng, n = random.Random(1), 0
        started = time.monotonic()
        while not self._stop.wait(max(0.0, started + (n + 1) / self.rate - time.monotonic())):
            n += 1
            key = f"doc-{rng.randrange(self.corpus)}" if n % 2 else f"new-{n}"
            self.send(key, f"streamed update {n} of {key}: kafka partitions keep the order of each key")

    def _queries(self) -> None:
        import httpx

        with httpx.Client(base_url=f"http://127.0.0.1:{self.cfg.http.port}", timeout=30, headers=self.headers) as http:
            while not self._stop.wait(1 / self.queries_per_s):
                sent = time.time()
                try:
                    r = http.post("/search", json={"query": "order of each key", "k": 3})
                    model = r.json().get("model") if r.status_code == 200 else None
                    self.searches.append((sent, r.status_code, model, r.text[:300]))
                except httpx.HTTPError as exc:
                    self.searches.append((sent, 0, None, repr(exc)))

    def _sample(self, consumers) -> None:
        import ray

        while not self._stop.wait(1.0):
            try:
                drained = ray.get([h.drain_latencies.remote() for h in consumers().values()], timeout=10)
            except Exception:  # a consumer restarting: its latencies come with the next second
                continue
            self.freshness.append((time.time(), [x for part in drained for x in part]))


def _freshness(load: Load, start: float, end: float) -> dict:
    values = [x for t, xs in load.freshness if start <= t < end for x in xs]
    return {"events": len(values), "p50_ms": pct(values, 50), "p99_ms": pct(values, 99)}


def run_once(model: str) -> dict:
    import ray

    from freshvec.cluster import reindex
    from freshvec.cluster.pipeline import deploy_serve, start_pipeline
    from freshvec.cluster.producer import produce

    cfg = bench_config("reindex")
    info = deploy_serve(cfg)
    supervisor = start_pipeline(cfg, info)
    try:
        texts = sentences(DOCS, seed=3)
        produce(cfg, ((f"doc-{i}", {"text": t}) for i, t in enumerate(texts)), total=DOCS)
        _wait_ingested(supervisor, DOCS)
        load = Load(cfg, DOCS, RATE, QUERIES_PER_S)
        load.latest.update({f"doc-{i}": t for i, t in enumerate(texts)})  # before the stream updates them
        ray.get([h.drain_latencies.remote() for h in supervisor.consumers().values()])  # the ingest's
        load.start(supervisor.consumers)
        time.sleep(BASELINE_S)
        started = time.time()
        state = reindex.run(cfg, model)
        finished = time.time()
        time.sleep(AFTER_S)
        load.stop()
        t = state.timings
        searches = load.searches
        result = {
            "docs": DOCS, "rate_eps": RATE, "model": model, "dim": state.model.dim,
            "backfill_docs": state.progress.get("done"), "backfill_s": t["backfill_s"],
            "backfill_docs_per_s": state.progress.get("done", 0) / t["backfill_s"],
            "caught_up_to_switched_s": t["switched_at"] - t["caught_up_at"], "switch_pause_s": t["switch_s"],
            "command_s": finished - started,
            "freshness_before": _freshness(load, started - BASELINE_S, started),
            "freshness_during": _freshness(load, started, finished),
            "freshness_after": _freshness(load, finished, finished + AFTER_S),
            "searches": len(searches), "searches_failed": sum(1 for s in searches if s[1] != 200),
            "searches_old_model_after_switch": sum(1 for s in searches if s[0] >= t["switched_at"] and s[2] == info.model),
            "keys_not_latest": _keys_not_latest(cfg, load.latest),
            "phases": {"started": started, "caught_up": t["caught_up_at"], "switched": t["switched_at"],
                       "finished": finished},
            "freshness_per_second": [(ts, pct(xs, 50), pct(xs, 99), len(xs)) for ts, xs in load.freshness],
        }
    finally:
        supervisor.stop()
        drop_run_state(cfg)
        _drop_versions(cfg)
    return result


def _wait_ingested(supervisor, n: int, timeout_s: float = 900) -> None:
    import ray
    from tqdm import tqdm

    with tqdm(total=n, desc="ingest", unit="doc") as bar:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done = sum(s.consumed for s in ray.get([h.stats.remote() for h in supervisor.consumers().values()]))
            bar.update(done - bar.n)
            if done >= n:
                return
            time.sleep(1)
    raise TimeoutError(f"only {bar.n} of {n} documents ingested in {timeout_s:.0f} s")


def _keys_not_latest(cfg, latest: dict[str, str], timeout_s: float = 120) -> dict:
    """Keys missing from the index, or holding another text than their latest (target: none), once
    the stream has been written or after `timeout_s`; up to 5 examples of each."""
    from freshvec.core.store import connect

    deadline = time.monotonic() + timeout_s
    while True:
        with connect(cfg.weaviate) as client:
            found = {o.properties["doc_id"]: o.properties["text"]
                     for o in client.collections.use(cfg.weaviate.collection).iterator()}
        missing = sorted(set(latest) - set(found))
        stale = sorted(k for k in set(latest) & set(found) if found[k] != latest[k])
        if not (missing or stale) or time.monotonic() > deadline:
            return {"missing": len(missing), "stale": len(stale), "extra": len(set(found) - set(latest)),
                    "examples": {k: {"want": latest.get(k), "found": found.get(k)} for k in (missing + stale)[:5]}}
        time.sleep(2)


def _drop_versions(cfg) -> None:
    import contextlib

    from freshvec.core.store import connect

    with contextlib.suppress(Exception), connect(cfg.weaviate) as client:
        for version in (1, 2):
            client.collections.delete(f"{cfg.weaviate.collection}_v{version}")


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["freshness_per_second"] if r[1] is not None]
    t0 = result["phases"]["started"]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.plot([r[0] - t0 for r in rows], [r[2] for r in rows], label="p99 of the second", lw=1)
    ax.plot([r[0] - t0 for r in rows], [r[1] for r in rows], label="p50 of the second", lw=1)
    for name, color in (("caught_up", "tab:green"), ("switched", "tab:red"), ("finished", "tab:gray")):
        ax.axvline(result["phases"][name] - t0, color=color, ls="--", label=name.replace("_", " "))
    ax.axvline(0, color="black", ls=":", label="reindex started")
    ax.set_yscale("log")
    ax.set_xlabel("seconds from the start of `freshvec reindex`")
    ax.set_ylabel("live freshness, ms")
    ax.set_title(f"Live freshness at {result['rate_eps']:g} ev/s while {result['docs']:,} documents are "
                 f"re-embedded ({result['backfill_docs_per_s']:.0f} docs/s)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    import tempfile

    import ray

    from freshvec.cluster import ray_env

    ray_env.apply_local()
    ray.init(include_dashboard=False, namespace="freshvec-bench")
    try:
        model = build_second_model(Path(tempfile.mkdtemp(prefix="fv-model-")) / "minilm-cls-256")
        result = run_once(model)
    finally:
        from ray import serve

        serve.shutdown()
        ray.shutdown()
    path = write_json("reindex.json", result)
    plot(result, RESULTS / "reindex.png")
    r = result
    print(f"backfill {r['backfill_docs']} records in {r['backfill_s']:.1f} s = {r['backfill_docs_per_s']:.0f} docs/s; "
          f"caught up -> switched {r['caught_up_to_switched_s']:.2f} s (pause {r['switch_pause_s'] * 1000:.0f} ms); "
          f"command {r['command_s']:.0f} s")
    for phase in ("before", "during", "after"):
        f = r[f"freshness_{phase}"]
        print(f"live freshness {phase}: p50 {f['p50_ms']} ms, p99 {f['p99_ms']} ms over {f['events']} events")
    print(f"searches {r['searches']}, failed {r['searches_failed']}, old model after the switch "
          f"{r['searches_old_model_after_switch']}; keys not at their latest text: {r['keys_not_latest']}; "
          f"wrote {path}")


if __name__ == "__main__":
    main()
