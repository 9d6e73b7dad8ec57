"""A single-node Weaviate server on loopback, built from source by build.sh.

Anonymous access (or API keys when given), no vectorizer modules: freshvec
supplies every vector itself. Each instance has its own ports and data dir.

    python -m freshvec.deploy.local.weaviate.server start --http-port 8080 --grpc-port 50051
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from freshvec.core.errors import PortInUseError
from freshvec.deploy.local import paths
from freshvec.deploy.local.process import ServiceProcess, port_open


@dataclass
class WeaviateServer:
    http_port: int = 8080
    grpc_port: int = 50051
    # Internal cluster ports: gossip, gossip+1 (data), raft, raft+1 (rpc).
    gossip_port: int = 7100
    raft_port: int = 8300
    state_dir: Path = field(default_factory=lambda: paths.state_dir() / "weaviate-8080")
    api_keys: dict[str, str] = field(default_factory=dict)  # key -> user; empty = anonymous

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir)
        self.process = ServiceProcess(
            name=f"weaviate 127.0.0.1:{self.http_port}",
            pid_file=self.state_dir / "weaviate.pid",
            log_file=self.state_dir / "weaviate.log",
            marker=f"--port {self.http_port}",
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def environment(self) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PERSISTENCE_DATA_PATH": str(self.state_dir / "data"),
            "DEFAULT_VECTORIZER_MODULE": "none",
            "ENABLE_MODULES": "",
            "DISABLE_TELEMETRY": "true",
            "GO_PROFILING_DISABLE": "true",  # else pprof listens on :6060, on all interfaces
            "QUERY_DEFAULTS_LIMIT": "25",
            "LOG_LEVEL": "info",
            "CLUSTER_HOSTNAME": "node1",
            "CLUSTER_IN_LOCALHOST": "true",
            "CLUSTER_BIND_ADDR": "127.0.0.1",
            "CLUSTER_ADVERTISE_ADDR": "127.0.0.1",
            "CLUSTER_GOSSIP_BIND_PORT": str(self.gossip_port),
            "CLUSTER_DATA_BIND_PORT": str(self.gossip_port + 1),
            "RAFT_PORT": str(self.raft_port),
            "RAFT_INTERNAL_RPC_PORT": str(self.raft_port + 1),
            "RAFT_JOIN": "node1",
            "RAFT_BOOTSTRAP_EXPECT": "1",
            "RAFT_TIMEOUTS_MULTIPLIER": "1",  # the default 5 takes 5-10 s to elect itself
            "GRPC_PORT": str(self.grpc_port),
            "DISK_USE_READONLY_PERCENTAGE": "100",  # never turn read-only on a full CI disk
        }
        if self.api_keys:
            env |= {
                "AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED": "false",
                "AUTHENTICATION_APIKEY_ENABLED": "true",
                "AUTHENTICATION_APIKEY_ALLOWED_KEYS": ",".join(self.api_keys),
                "AUTHENTICATION_APIKEY_USERS": ",".join(self.api_keys.values()),
            }
        else:
            env["AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED"] = "true"
        return env

    def is_running(self) -> bool:
        return self.process.pid() is not None

    def start(self, timeout: float = 90.0) -> None:
        """Start the server and wait for /v1/.well-known/ready (raft leader elected)."""
        if self.is_running():
            return
        for port in (self.http_port, self.grpc_port):
            if port_open(port):
                raise PortInUseError(f"port {port} is taken by another process; pick other Weaviate ports")
        binary = paths.weaviate_binary()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.process.spawn(
            [str(binary), "--host", "127.0.0.1", "--port", str(self.http_port), "--scheme", "http",
             "--read-timeout=600s", "--write-timeout=600s"],
            env=self.environment(), cwd=self.state_dir,
        )
        self.process.wait_until(self.ready, timeout, "ready")

    def ready(self) -> bool:
        return httpx.get(f"{self.url}/v1/.well-known/ready", timeout=2).status_code == 200

    def stop(self, timeout: float = 30.0) -> bool:
        return self.process.stop(timeout)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--http-port", type=int, default=int(os.environ.get("WEAVIATE_HTTP_PORT", 8080)))
    parser.add_argument("--grpc-port", type=int, default=int(os.environ.get("WEAVIATE_GRPC_PORT", 50051)))
    parser.add_argument("--state-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    server = WeaviateServer(args.http_port, args.grpc_port,
                            state_dir=args.state_dir or paths.state_dir() / f"weaviate-{args.http_port}")
    if args.action == "start":
        server.start()
        print(f"weaviate: up on {server.url}, gRPC 127.0.0.1:{server.grpc_port} (pid {server.process.pid()})")
    elif args.action == "stop":
        print("weaviate: stopped" if server.stop() else "weaviate: was not running")
    else:
        print(f"weaviate: {'running' if server.is_running() else 'stopped'} on {server.url}")


if __name__ == "__main__":
    main()
