"""The `freshvec` command line: produce events, run the pipeline, run a demo."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from cluster.config import ConfigError, FreshvecConfig, load_config

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "local" / "freshvec.yaml"


def _config(path: str | None) -> FreshvecConfig:
    return load_config(path or os.environ.get("FRESHVEC_CONFIG") or DEFAULT_CONFIG)


def init_ray(dashboard: bool = True) -> None:
    """Join the cluster in RAY_ADDRESS, or start a local one (dashboard on 127.0.0.1:8265)."""
    import ray

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], namespace="freshvec")
    else:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a loopback-only dev cluster
        ray.init(include_dashboard=dashboard, dashboard_host="127.0.0.1", namespace="freshvec")


def cmd_produce(args) -> None:
    from cluster.corpus import demo_documents
    from cluster.producer import produce, read_jsonl

    cfg = _config(args.config)
    if args.demo:
        events, total = demo_documents(args.demo), args.demo
    elif args.file in (None, "-"):
        events, total = read_jsonl(sys.stdin), None
    else:
        with open(args.file) as f:
            lines = f.readlines()
        events, total = read_jsonl(lines), len(lines)
    sent = produce(cfg, events, topic=args.topic, rate=args.rate, total=total)
    print(f"sent {sent} events to {args.topic or cfg.kafka.topics[0]}")


def _status_line(supervisor) -> str:
    import numpy as np
    import ray

    stats = []
    for handle in supervisor.consumers().values():
        try:
            stats.append(ray.get(handle.stats.remote(), timeout=5))
        except Exception:
            pass
    consumed = sum(s["consumed"] for s in stats)
    p50 = [s["p50_ms"] for s in stats if s["p50_ms"] is not None]
    p99 = [s["p99_ms"] for s in stats if s["p99_ms"] is not None]
    fresh = f"freshness p50 {np.median(p50):.1f} ms, p99 {max(p99):.1f} ms (last 60 s)" if p50 else "no events in 60 s"
    return (f"{len(stats)} consumers, {consumed} consumed, {sum(s['dead_lettered'] for s in stats)} dead-lettered, "
            f"{sum(s['retries'] for s in stats)} retries; {fresh}")


def cmd_run(args) -> None:
    from ray import serve

    from cluster.pipeline import deploy_serve, start_pipeline

    cfg = _config(args.config)
    init_ray()
    info = deploy_serve(cfg)
    supervisor = start_pipeline(cfg, info)
    print(f"freshvec: running; model {info.model} ({info.dim} dims); topics {cfg.kafka.topics} -> "
          f"Weaviate {cfg.weaviate.collection}; HTTP on http://{cfg.http.host}:{cfg.http.port}; Ctrl-C stops",
          flush=True)
    if args.produce_demo:
        from cluster.corpus import demo_documents
        from cluster.producer import produce

        threading.Thread(target=produce, args=(cfg, demo_documents(args.produce_demo)),
                         kwargs={"rate": args.rate, "total": args.produce_demo}, daemon=True).start()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        while not stopping.wait(args.status_interval):
            print(f"[{time.strftime('%H:%M:%S')}] {_status_line(supervisor)}", flush=True)
    except KeyboardInterrupt:
        pass
    print("freshvec: stopping (finishing in-flight batches) ...", flush=True)
    supervisor.stop()
    serve.shutdown()


def cmd_status(args) -> None:
    import json

    import ray

    from cluster import status

    cfg = _config(args.config)
    logging.getLogger().setLevel(logging.WARNING)
    ray.init(address=os.environ.get("RAY_ADDRESS", "auto"), namespace="freshvec", logging_level=logging.WARNING,
             log_to_driver=False)
    report = status.collect(cfg)
    print(json.dumps(report, indent=2) if args.json else status.render(report))


def cmd_demo(args) -> None:
    from deploy.local import stack

    stack.up()
    cfg = _config(args.config)
    init_ray(dashboard=False)
    from cluster.demo import run_demo

    run_demo(cfg, args.n)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="freshvec", description=__doc__)
    parser.add_argument("-c", "--config", help=f"YAML config (default: $FRESHVEC_CONFIG or {DEFAULT_CONFIG})")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("produce", help="send events from a JSONL file, stdin or the demo corpus")
    p.add_argument("file", nargs="?", help="JSONL file ('-' or nothing: stdin)")
    p.add_argument("--demo", type=int, metavar="N", help="send N paragraphs of the built-in demo corpus")
    p.add_argument("--topic", help="topic (default: the first of kafka.topics)")
    p.add_argument("--rate", type=float, help="events per second (default: as fast as possible)")
    p.set_defaults(func=cmd_produce)

    p = commands.add_parser("run", help="run Ray, Serve and the consumers on a config until Ctrl-C")
    p.add_argument("--produce-demo", type=int, metavar="N", help="also send N demo documents once running")
    p.add_argument("--rate", type=float, default=50.0, help="rate of --produce-demo, events/s (default 50)")
    p.add_argument("--status-interval", type=float, default=10.0)
    p.set_defaults(func=cmd_run)

    p = commands.add_parser("status", help="consumers, lag, freshness, throughput, DLQ and Serve replicas")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_status)

    p = commands.add_parser("demo", help="local stack up, demo corpus in, print count, freshness and a search")
    p.add_argument("-n", type=int, default=300, help="documents to ingest (default 300)")
    p.set_defaults(func=cmd_demo)

    args = parser.parse_args(argv)
    try:
        args.func(args)
    except ConfigError as exc:
        sys.exit(f"freshvec: config error: {exc}")


if __name__ == "__main__":
    main()
