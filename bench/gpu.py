"""GPU replicas: the embedder on CUDA (torch, fp16), 1, 2 and 4 replicas sharing one GPU.

    make bench-gpu      (a machine with a CUDA GPU; no services needed)

For each replica count n (num_gpus = 1/n each, so all share the GPU), over HTTP /embed:
  cosine    the smallest cosine between the GPU's vectors and the CPU path's (ONNX Runtime) for the
            same texts: fp16 must not change what is found (target >= 0.999);
  single    one text per request, one at a time: p50 and p99 latency;
  b4x32     4 clients x 32 texts per request: texts/s;
  b64x32    64 clients x 32 texts per request: texts/s.
It reports how many replicas one GPU holds before throughput stops rising (less than 5 % more).
About 4 minutes. Writes bench/results/gpu.json. On a machine without CUDA it says so and exits 2:
until a run's results are committed, the GPU path is unproven.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ["HF_HUB_OFFLINE"] = "1"
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import pct, write_json  # noqa: E402
from bench.serve import CHECK, MODEL, POOL, concurrent, http_session  # noqa: E402
from freshvec.cluster import ray_env  # noqa: E402

REPLICAS = [int(n) for n in os.environ.get("BENCH_GPU_REPLICAS", "1,2,4").split(",")]
SECONDS = float(os.environ.get("BENCH_GPU_SECONDS", 15))
N_SINGLE = int(os.environ.get("BENCH_GPU_N_SINGLE", 100))
PORT = int(os.environ.get("BENCH_GPU_PORT", 8000))


def cpu_vectors() -> np.ndarray:
    from freshvec.serve.model import load_sentence_transformer

    model = load_sentence_transformer(MODEL, backend="onnx")
    return model.encode(CHECK, normalize_embeddings=True, convert_to_numpy=True)


def run(n: int, reference: np.ndarray) -> dict:
    from freshvec.cluster.pipeline import deploy_serve
    from freshvec.core.config import parse_config

    deploy_serve(parse_config({
        "http": {"port": PORT},
        "embedding": {"device": "cuda", "num_gpus": 1 / n, "num_cpus": 1, "max_batch_size": 256,
                      "autoscaling": {"min_replicas": n, "max_replicas": n}},
    }))
    session = lambda: http_session(f"http://127.0.0.1:{PORT}/embed", lambda texts: {"texts": texts})  # noqa: E731
    with session() as embed:
        for text in POOL[-20:]:
            embed([text])
        vectors = np.asarray(embed(CHECK).json()["embeddings"], dtype=np.float32)
        cosine = float(np.min(np.sum(vectors * reference, axis=1)
                              / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(reference, axis=1))))
        latencies = []
        for text in POOL[:N_SINGLE]:
            start = time.perf_counter()
            embed([text])
            latencies.append((time.perf_counter() - start) * 1000)
    b4, _ = concurrent(session, 4, 32, SECONDS, f"{n} replicas")
    b64, _ = concurrent(session, 64, 32, SECONDS, f"{n} replicas")
    out = {"replicas": n, "num_gpus_each": round(1 / n, 3), "min_cosine_vs_cpu": round(cosine, 6),
           "single_p50_ms": pct(latencies, 50), "single_p99_ms": pct(latencies, 99),
           "b4x32_texts_per_s": round(b4, 1), "b64x32_texts_per_s": round(b64, 1)}
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    import torch

    if not torch.cuda.is_available():
        print("bench-gpu: no CUDA device on this machine; the GPU replica path is unproven here", file=sys.stderr)
        sys.exit(2)
    reference = cpu_vectors()
    ray_env.apply_local()
    import ray
    from ray import serve

    ray.init(include_dashboard=False, namespace="freshvec-bench")
    try:
        results = [run(n, reference) for n in REPLICAS]
    finally:
        serve.shutdown()
        ray.shutdown()
    holds = results[0]["replicas"]
    for before, after in zip(results, results[1:]):
        if after["b64x32_texts_per_s"] < 1.05 * before["b64x32_texts_per_s"]:
            break
        holds = after["replicas"]
    out = {"gpu": torch.cuda.get_device_name(0), "runs": results, "replicas_before_throughput_stops_rising": holds,
           "cosine_target_met": all(r["min_cosine_vs_cpu"] >= 0.999 for r in results)}
    print(f"wrote {write_json('gpu.json', out)}")


if __name__ == "__main__":
    main()
