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

from freshvec.cluster import leftovers, ray_env
from freshvec.core.config import ConfigError, FreshvecConfig, load_config
from freshvec.core.errors import FreshvecError, RunIncomplete

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "local" / "freshvec.yaml"


def _config(path: str | None) -> FreshvecConfig:
    return load_config(path or os.environ.get("FRESHVEC_CONFIG") or DEFAULT_CONFIG)


def init_ray(cfg: FreshvecConfig, dashboard: bool = True) -> None:
    """Join the cluster in RAY_ADDRESS, or start a local one (dashboard on 127.0.0.1:8265).

    A local cluster first clears what a killed run left on http.port (cluster/leftovers.py).
    """
    import ray

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # this driver loads no model, but may import transformers
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], namespace="freshvec")
        return
    folder = ray_env.apply_local(cfg.http.port)
    for line in leftovers.clear_port(cfg.http.host, cfg.http.port, folder, "http.port"):
        print(f"freshvec: {line}", flush=True)
    ray.init(include_dashboard=dashboard, dashboard_host="127.0.0.1", namespace="freshvec")


def cmd_produce(args) -> None:
    from freshvec.cluster.corpus import demo_documents
    from freshvec.cluster.producer import produce, read_jsonl

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


def _status_line(cfg: FreshvecConfig) -> str:
    from freshvec.cluster import status

    report = status.collect(cfg)
    t = report["totals"]

    def ms(v):
        return "-" if v is None else f"{v:.1f} ms"

    serve = report["serve"]
    target = serve.get("target_replicas")
    line = (f"{t['live']}/{t['consumers']} consumers, lag {t['lag']}, {t['throughput_eps']:.1f} ev/s, "
            f"{t['dlq']} dead-lettered; freshness p50 {ms(t['freshness_p50_ms'])}, p99 {ms(t['freshness_p99_ms'])} "
            f"(last minute); {serve.get('running_replicas', 0)} replicas"
            f"{'' if target in (None, serve.get('running_replicas')) else f' (scaling to {target})'}")
    return "\n".join([line] + [f"  {problem}" for problem in status.problem_lines(report["consumers"])])


def _records_done(supervisor) -> int:
    """Records the consumers finished (written to Weaviate or dead-lettered) since they started."""
    import ray

    calls = [handle.stats.remote() for handle in supervisor.consumers().values()]
    ready, _ = ray.wait(calls, num_returns=len(calls), timeout=2)
    total = 0
    for ref in ready:
        try:
            total += ray.get(ref).consumed
        except Exception:  # restarting: counted again once it is back
            pass
    return total


def _stop_gracefully(supervisor, consumers_s: float) -> None:
    """Consumers finish their batch and commit (killed after `consumers_s`), then Ray stops.

    Nothing is lost either way: what a consumer did not commit is read again by the next run. Ray's
    shutdown ends Serve with the cluster, its HAProxy included; serve.shutdown() first would only add
    its draining. A second Ctrl-C skips to stopping Ray.
    """
    import ray

    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if supervisor is not None:
            supervisor.stop(timeout_s=consumers_s)
    except KeyboardInterrupt:
        print("freshvec: second Ctrl-C, stopping Ray now", flush=True)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ray must not be interrupted half-way
        ray.shutdown()
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _raise_interrupt(*_) -> None:
    raise KeyboardInterrupt


def cmd_run(args) -> None:
    from freshvec.cluster.pipeline import deploy_serve, start_pipeline
    from freshvec.cluster.placement import regions
    from freshvec.cluster.supervisor import check_services, require_region_nodes

    cfg = _config(args.config)
    for region in regions(cfg):
        check_services(region.cfg)
    init_ray(cfg)
    supervisor, reached = None, None
    started = time.monotonic()
    # After ray.init, which installs its own SIGTERM handler: `kill` stops as cleanly as Ctrl-C. SIGINT
    # explicitly too: a shell starts background jobs with it ignored, which Python would keep.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    try:
        require_region_nodes(cfg, args.wait_for_nodes_s)
        info = deploy_serve(cfg)
        supervisor = start_pipeline(cfg, info)
        print(f"freshvec: running; model {info.model} ({info.dim} dims); topics {cfg.kafka.topics} -> "
              f"Weaviate {cfg.weaviate.collection}; HTTP on http://{cfg.http.host}:{cfg.http.port}; Ctrl-C stops",
              flush=True)
        if args.produce_demo:
            from freshvec.cluster.corpus import demo_documents
            from freshvec.cluster.producer import produce

            threading.Thread(target=produce, args=(cfg, demo_documents(args.produce_demo)),
                             kwargs={"rate": args.rate, "total": args.produce_demo}, daemon=True).start()
        last_status = time.monotonic()
        while True:
            time.sleep(min(1.0, args.status_interval))
            now = time.monotonic()
            if now - last_status >= args.status_interval:
                print(f"[{time.strftime('%H:%M:%S')}] {_status_line(cfg)}", flush=True)
                last_status = now
            if args.stop_after_docs and _records_done(supervisor) >= args.stop_after_docs:
                reached = True
                break
            if args.stop_after_s and now - started >= args.stop_after_s:
                reached = not args.stop_after_docs
                break
        print(f"[{time.strftime('%H:%M:%S')}] {_status_line(cfg)}", flush=True)
    except KeyboardInterrupt:
        pass
    except BaseException:  # e.g. Kafka unreachable at start: still leave nothing running
        _stop_gracefully(supervisor, consumers_s=4.0)
        raise
    done = _records_done(supervisor) if supervisor is not None else 0
    print(f"freshvec: stopping ({done} records written or dead-lettered by this run; consumers get 4 s to "
          "finish their batch) ...", flush=True)
    t0 = time.monotonic()
    _stop_gracefully(supervisor, consumers_s=4.0)
    print(f"freshvec: stopped in {time.monotonic() - t0:.1f} s", flush=True)
    if reached is False:
        raise RunIncomplete(f"{done} of {args.stop_after_docs} records done within {args.stop_after_s:.0f} s")


def cmd_status(args) -> None:
    import json

    import ray

    from freshvec.cluster import status

    cfg = _config(args.config)
    logging.getLogger().setLevel(logging.WARNING)
    ray.init(address=os.environ.get("RAY_ADDRESS", "auto"), namespace="freshvec", logging_level=logging.WARNING,
             log_to_driver=False)
    report = status.collect(cfg)
    print(json.dumps(report, indent=2) if args.json else status.render(report))


def cmd_cluster_yaml(args) -> None:
    import yaml

    from freshvec.cluster.rayup import cluster_yaml, local_cluster_yaml, validate

    if args.provider == "local":
        if not args.head_ip:
            raise ConfigError("--provider local needs --head-ip (and --worker-ips for the other machines)")
        config = local_cluster_yaml(_config(args.config), args.region, args.head_ip, args.worker_ips,
                                    args.ssh_user, args.ssh_key, args.project_dir, args.num_cpus)
    else:
        config = cluster_yaml(_config(args.config), args.region, args.provider, args.cloud_region, args.project_id)
    validate(config)
    text = yaml.safe_dump(config, sort_keys=False)
    if args.output:
        Path(args.output).write_text(f"# ray up {args.output}  (generated by freshvec cluster-yaml)\n" + text)
        print(f"wrote {args.output}")
    else:
        print(text)


def cmd_migrate_collection(args) -> None:
    from tqdm import tqdm

    from freshvec.cluster.placement import regions
    from freshvec.core import collections
    from freshvec.core.store import connect

    cfg = _config(args.config)
    seen = set()
    for region in regions(cfg):
        w = region.cfg.weaviate
        if (w.host, w.http_port, w.collection) in seen:
            continue
        seen.add((w.host, w.http_port, w.collection))
        with connect(w) as client, tqdm(desc=f"{w.collection} on {w.host}:{w.http_port}", unit="obj") as bar:
            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            physical = collections.migrate(client, w.collection, cfg.embedding.model, progress)
        print(f"freshvec: {w.collection} " + (f"is an alias of {physical}" if physical else
                                               "was empty and is deleted; the next start creates it"))


def cmd_reindex(args) -> None:
    import ray

    from freshvec.cluster import reindex

    cfg = _config(args.config)
    if args.resume + args.abort + bool(args.model) != 1:
        raise ConfigError("give one of --model M, --resume, --abort")
    if not ray.is_initialized():  # a test may call this inside its own driver
        ray.init(address=os.environ.get("RAY_ADDRESS", "auto"), namespace="freshvec", logging_level=logging.WARNING,
                 log_to_driver=False)
    try:
        state = reindex.run(cfg, args.model, keep_old=args.keep_old, resume=args.resume, abort=args.abort)
    except KeyboardInterrupt:
        sys.exit(130)
    if state is not None and state.timings.get("switch_s") is not None:
        t = state.timings
        print(f"freshvec: backfill {t.get('backfill_s', float('nan')):.1f} s; caught up to switched "
              f"{t['switched_at'] - t['caught_up_at']:.2f} s")


def cmd_demo(args) -> None:
    import ray

    from freshvec.deploy.local import stack

    stack.up()
    cfg = _config(args.config)
    init_ray(cfg, dashboard=False)
    from freshvec.cluster.demo import run_demo

    try:
        run_demo(cfg, args.n)
    finally:
        ray.shutdown()


def _config_option(parser: argparse.ArgumentParser, default) -> None:
    parser.add_argument("-c", "--config", default=default,
                        help=f"YAML config (default: $FRESHVEC_CONFIG or {DEFAULT_CONFIG})")


def _env_number(name: str, kind: type):
    value = os.environ.get(name)
    return kind(value) if value else None


def build_parser() -> argparse.ArgumentParser:
    """The parser; -c/--config is accepted before the subcommand and after it."""
    parser = argparse.ArgumentParser(prog="freshvec", description=__doc__)
    _config_option(parser, None)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, **kwargs) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, **kwargs)
        _config_option(sub, argparse.SUPPRESS)  # SUPPRESS: a -c given before the subcommand stays
        return sub

    p = command("produce", help="send events from a JSONL file, stdin or the demo corpus")
    p.add_argument("file", nargs="?", help="JSONL file ('-' or nothing: stdin)")
    p.add_argument("--demo", type=int, metavar="N", help="send N paragraphs of the built-in demo corpus")
    p.add_argument("--topic", help="topic (default: the first of kafka.topics)")
    p.add_argument("--rate", type=float, help="events per second (default: as fast as possible)")
    p.set_defaults(func=cmd_produce)

    p = command("run", help="run Ray, Serve and the consumers on a config until Ctrl-C")
    p.add_argument("--produce-demo", type=int, metavar="N", help="also send N demo documents once running")
    p.add_argument("--rate", type=float, default=50.0, help="rate of --produce-demo, events/s (default 50)")
    p.add_argument("--status-interval", type=float, default=10.0, metavar="S",
                   help="seconds between status lines (default 10)")
    p.add_argument("--stop-after-docs", type=int, metavar="N", default=_env_number("FRESHVEC_STOP_AFTER_DOCS", int),
                   help="stop once the consumers finished N records (default: $FRESHVEC_STOP_AFTER_DOCS, or never)")
    p.add_argument("--stop-after-s", type=float, metavar="S", default=_env_number("FRESHVEC_STOP_AFTER_S", float),
                   help="stop after S seconds; with --stop-after-docs, fail when N were not reached by then "
                        "(default: $FRESHVEC_STOP_AFTER_S, or never)")
    p.add_argument("--wait-for-nodes-s", type=float, default=60.0, metavar="S",
                   help="how long each region may be without a node carrying its label before the run "
                        "fails (default 60)")
    p.set_defaults(func=cmd_run)

    p = command("status", help="consumers, lag, freshness, throughput, DLQ and Serve replicas")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_status)

    p = command("cluster-yaml", help="write a `ray up` config for one region")
    p.add_argument("--region", required=True, help="a key of the config's regions:")
    p.add_argument("--provider", required=True, choices=["aws", "gcp", "local"],
                   help="local: machines you have, reached over SSH")
    p.add_argument("--cloud-region", help="the cloud's region name (default: the region's name)")
    p.add_argument("--project-id", default="my-gcp-project", help="GCP project (gcp only)")
    p.add_argument("--head-ip", help="local: the head machine's address")
    p.add_argument("--worker-ips", type=lambda s: [ip for ip in s.split(",") if ip], default=[],
                   help="local: the workers' addresses, comma-separated")
    p.add_argument("--ssh-user", default="root", help="local: SSH user (default root)")
    p.add_argument("--ssh-key", default="~/.ssh/id_ed25519", help="local: SSH private key")
    p.add_argument("--project-dir", default=str(Path(__file__).resolve().parents[1]),
                   help="local: where freshvec is set up on each machine (default: this checkout)")
    p.add_argument("--num-cpus", type=int, default=1, help="local: Ray CPUs per machine (default 1)")
    p.add_argument("-o", "--output", help="file to write (default: stdout)")
    p.set_defaults(func=cmd_cluster_yaml)

    p = command("migrate-collection",
                help="move a collection made before aliases under an alias of its name (copies its objects)")
    p.set_defaults(func=cmd_migrate_collection)

    p = command("reindex", help="re-embed the index with another model while ingestion and search go on, then "
                                "switch to it in one step")
    p.add_argument("--model", help="the new model: a packaged model's name or a sentence-transformers directory")
    p.add_argument("--keep-old", action="store_true", help="keep the old collection after the switch")
    p.add_argument("--resume", action="store_true", help="go on with the reindex in progress (after Ctrl-C or a crash)")
    p.add_argument("--abort", action="store_true", help="undo the reindex in progress (before its switch)")
    p.set_defaults(func=cmd_reindex)

    p = command("demo", help="local stack up, demo corpus in, print count, freshness and a search")
    p.add_argument("-n", type=int, default=300, help="documents to ingest (default 300)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)  # kafka-python logs every admin connection
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except FreshvecError as exc:  # one line, no traceback: what failed and what to do
        print(f"freshvec: {'config error: ' if isinstance(exc, ConfigError) else ''}{exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
