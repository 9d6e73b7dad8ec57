"""A single-node Apache Kafka broker in KRaft mode (combined broker and controller).

Each broker is independent: its own ports, data dir and cluster id, so several
can run at once (the region tests run one per region). Data survives
`stop`/`start`; a fresh state dir gets a fresh cluster.

    python -m freshvec.deploy.local.kafka.broker start --port 9092 --controller-port 9093
"""

from __future__ import annotations

import argparse
import base64
import os
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from freshvec.core.errors import PortInUseError
from freshvec.deploy.local import paths
from freshvec.deploy.local.process import ServiceProcess, port_open

HERE = Path(__file__).resolve().parent
JVM_FLAGS = [
    "-Xms256M", "-Xmx512M", "-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:MaxInlineLevel=15", "-Djava.awt.headless=true",
]


def new_cluster_id() -> str:
    """A random Kafka cluster id. Like Kafka's Uuid.randomUuid, never one that starts with '-': the
    storage tool would read it as an option (one id in 64 did, and the broker then failed to format)."""
    while (cluster_id := base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")).startswith("-"):
        pass
    return cluster_id


@dataclass
class KafkaBroker:
    port: int = 9092
    controller_port: int = 9093
    state_dir: Path = field(default_factory=lambda: paths.state_dir() / "kafka-9092")
    node_id: int = 1
    # Extra server.properties lines, e.g. a SASL_SSL listener for the security tests.
    extra_properties: dict[str, str] = field(default_factory=dict)
    # Extra listeners as name -> port (their security protocol is the name), e.g. {"SASL_SSL": 9094}.
    extra_listeners: dict[str, int] = field(default_factory=dict)
    # Extra `kafka-storage format` arguments, e.g. --add-scram for SCRAM users (first start only).
    format_args: list[str] = field(default_factory=list)
    host: str = "127.0.0.1"  # where the client listener is; a simulated host's address (deploy/sim)

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir)
        self.process = ServiceProcess(
            name=f"kafka broker {self.host}:{self.port}",
            pid_file=self.state_dir / "kafka.pid",
            log_file=self.state_dir / "kafka.log",
            marker=str(self.state_dir / "server.properties"),
        )

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    def properties(self) -> dict[str, str]:
        listeners = ",".join([f"PLAINTEXT://127.0.0.1:{self.port}", f"CONTROLLER://127.0.0.1:{self.controller_port}",
                              *(f"{name}://127.0.0.1:{port}" for name, port in self.extra_listeners.items())])
        protocols = ",".join(["CONTROLLER:PLAINTEXT", "PLAINTEXT:PLAINTEXT",
                              *(f"{name}:{name}" for name in self.extra_listeners)])
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "listeners": listeners,
            "advertised.listeners": listeners,
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": protocols,
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # The default 3 s delay would stall every new consumer group in tests.
            "group.initial.rebalance.delay.ms": "0",
            # Accept records up to 16 MB, so oversized events reach the pipeline (and its DLQ) in tests.
            "message.max.bytes": str(16 * 1024 * 1024),
        }
        props.update(self.extra_properties)
        return props

    def is_running(self) -> bool:
        return self.process.pid() is not None

    def start(self, timeout: float = 90.0) -> None:
        """Format the log dir on first use, start the broker and wait until it serves metadata."""
        if self.is_running():
            return
        if port_open(self.port, self.host):
            raise PortInUseError(f"port {self.port} is taken by another process; pick another --port")
        libs = paths.kafka_libs()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        config = self.state_dir / "server.properties"
        config.write_text("".join(f"{k}={v}\n" for k, v in self.properties().items()))
        classpath = f"{libs}/*"
        java = ["java", f"-Dlog4j2.configurationFile={HERE / 'log4j2.xml'}",
                f"-Dkafka.logs.dir={self.state_dir}", f"-Djava.io.tmpdir={self.state_dir}"]
        if not (self.data_dir / "meta.properties").exists():
            cluster_id = new_cluster_id()
            subprocess.run(
                [*java, "-Xmx256M", "-cp", classpath, "kafka.tools.StorageTool", "format",
                 "--standalone", "-t", cluster_id, "-c", str(config), *self.format_args],
                check=True, capture_output=True, text=True,
            )
        self.process.spawn([*java, *JVM_FLAGS, "-cp", classpath, "kafka.Kafka", str(config)])
        self.process.wait_until(self._serves_metadata, timeout, "serving metadata")

    def _serves_metadata(self) -> bool:
        if not port_open(self.port, self.host):
            return False
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap_servers, request_timeout_ms=3000)
        try:
            admin.list_topics()
            return True
        finally:
            admin.close()

    def stop(self, timeout: float = 30.0) -> bool:
        return self.process.stop(timeout)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--port", type=int, default=int(os.environ.get("KAFKA_PORT", 9092)))
    parser.add_argument("--controller-port", type=int, default=int(os.environ.get("KAFKA_CONTROLLER_PORT", 9093)))
    parser.add_argument("--state-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    broker = KafkaBroker(args.port, args.controller_port,
                         args.state_dir or paths.state_dir() / f"kafka-{args.port}")
    if args.action == "start":
        broker.start()
        print(f"kafka: up on {broker.bootstrap_servers} (pid {broker.process.pid()}, log {broker.process.log_file})")
    elif args.action == "stop":
        print("kafka: stopped" if broker.stop() else "kafka: was not running")
    else:
        print(f"kafka: {'running' if broker.is_running() else 'stopped'} on {broker.bootstrap_servers}")


if __name__ == "__main__":
    main()
