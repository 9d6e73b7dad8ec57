"""Start, stop and report the local stack: one Kafka broker and one Weaviate server.

    python -m freshvec.deploy.local.stack up|down|status

Ports come from the environment (defaults in brackets): KAFKA_PORT [9092],
KAFKA_CONTROLLER_PORT [9093], WEAVIATE_HTTP_PORT [8080], WEAVIATE_GRPC_PORT [50051].
"""

from __future__ import annotations

import argparse
import os
import sys

from freshvec.core.errors import FreshvecError
from freshvec.deploy.local import paths
from freshvec.deploy.local.kafka.broker import KafkaBroker
from freshvec.deploy.local.weaviate.server import WeaviateServer


def default_kafka() -> KafkaBroker:
    port = int(os.environ.get("KAFKA_PORT", 9092))
    return KafkaBroker(port, int(os.environ.get("KAFKA_CONTROLLER_PORT", port + 1)),
                       state_dir=paths.state_dir() / f"kafka-{port}")


def default_weaviate() -> WeaviateServer:
    port = int(os.environ.get("WEAVIATE_HTTP_PORT", 8080))
    return WeaviateServer(port, int(os.environ.get("WEAVIATE_GRPC_PORT", 50051)),
                          state_dir=paths.state_dir() / f"weaviate-{port}")


def up() -> None:
    kafka, weaviate = default_kafka(), default_weaviate()
    kafka.start()
    print(f"kafka:    {kafka.bootstrap_servers} (KRaft, pid {kafka.process.pid()}, log {kafka.process.log_file})")
    weaviate.start()
    print(f"weaviate: {weaviate.url}, gRPC 127.0.0.1:{weaviate.grpc_port} "
          f"(pid {weaviate.process.pid()}, log {weaviate.process.log_file})")


def down() -> None:
    for service in (default_weaviate(), default_kafka()):
        stopped = service.stop()
        print(f"{service.process.name}: {'stopped' if stopped else 'was not running'}")


def status() -> None:
    for service in (default_kafka(), default_weaviate()):
        pid = service.process.pid()
        print(f"{service.process.name}: {f'running (pid {pid})' if pid else 'stopped'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["up", "down", "status"])
    action = parser.parse_args(argv).action
    try:
        {"up": up, "down": down, "status": status}[action]()
    except FreshvecError as exc:  # one line: what is missing or in the way, and what to do
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
