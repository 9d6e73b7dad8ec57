"""The project's Kafka broker and Weaviate server, bound to a test host's address.

Same classes as the local stack (deploy/local), changed only where they name
127.0.0.1: the listeners and the readiness checks. They are started *inside*
the host's namespace (see launch.py), where 127.0.0.1 is the host's own
loopback, so the controller port and Weaviate's internal ports stay private to
the host and never meet the root namespace's services.

A broker has a second listener, WAN, for the other region: a client there
bootstraps through the Toxiproxy proxy, lands on WAN, and the metadata it gets
back advertises the proxy's address, so every later connection (to the leader
of each partition) also crosses the delayed path instead of going around it.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from freshvec.core.errors import PortInUseError
from freshvec.deploy.local import paths
from freshvec.deploy.local.kafka.broker import KafkaBroker
from freshvec.deploy.local.process import port_open
from freshvec.deploy.local.weaviate.server import WeaviateServer


@dataclass
class SimKafkaBroker(KafkaBroker):
    wan_port: int = 9094  # the WAN listener, on the host's address; only the proxy connects to it
    wan_advertised: str = ""  # host:port of the proxy other regions reach this broker through

    def properties(self) -> dict[str, str]:
        props = super().properties()
        controller = f"CONTROLLER://127.0.0.1:{self.controller_port}"  # the host's own loopback
        listeners = [f"PLAINTEXT://{self.host}:{self.port}", controller]
        advertised = list(listeners)
        if self.wan_advertised:
            listeners.append(f"WAN://{self.host}:{self.wan_port}")
            advertised.append(f"WAN://{self.wan_advertised}")
            props["listener.security.protocol.map"] += ",WAN:PLAINTEXT"
        props["listeners"] = ",".join(listeners)
        props["advertised.listeners"] = ",".join(advertised)
        return props


@dataclass
class SimWeaviate(WeaviateServer):
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.process.name = f"weaviate {self.host}:{self.http_port}"
        # The base marker "--port 8080" would also match the root namespace's Weaviate.
        self.process.marker = f"--host {self.host} --port {self.http_port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def start(self, timeout: float = 90.0) -> None:
        """As the base class, with --host the host's address (gRPC listens on every address anyway)."""
        if self.is_running():
            return
        for port in (self.http_port, self.grpc_port):
            if port_open(port, self.host):
                raise PortInUseError(f"{self.host}:{port} is taken by another process")
        binary = paths.weaviate_binary()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.process.spawn(
            [str(binary), "--host", self.host, "--port", str(self.http_port), "--scheme", "http",
             "--read-timeout=600s", "--write-timeout=600s"],
            env=self.environment(), cwd=self.state_dir,
        )
        self.process.wait_until(self.ready, timeout, "ready")

    def ready(self) -> bool:
        # trust_env off: the host's address must never go through an HTTP proxy from the environment.
        return httpx.get(f"{self.url}/v1/.well-known/ready", timeout=2, trust_env=False).status_code == 200
