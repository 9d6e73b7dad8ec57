"""The two-region layout: which host runs what, and which address each region uses.

    host       address       region  runs
    wan        10.250.0.2    -       toxiproxy (API :8474), the delayed paths between regions
    a-head     10.250.0.11   a       sshd, Kafka broker A (:9092, WAN listener :9094), Weaviate (:8080, gRPC :50051)
    a-worker   10.250.0.12   a       sshd
    b-head     10.250.0.21   b       sshd, Kafka broker B (:9092, WAN listener :9094)
    b-worker   10.250.0.22   b       sshd

A client uses its own region's broker directly and the other region's through
the proxy on `wan` (region a reaches B at 10.250.0.2:29092, region b reaches A at
10.250.0.2:19092, and Weaviate at 10.250.0.2:18080 / gRPC :15051). Nothing stops a
client from dialling the other region's address directly: that path has no delay.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from freshvec.deploy.local import paths
from freshvec.deploy.sim.hosts import Host
from freshvec.deploy.sim.services import SimKafkaBroker, SimWeaviate
from freshvec.deploy.sim.sshd import USER, Sshd, SshKeys
from freshvec.deploy.sim.toxiproxy import Proxy, Toxiproxy

LATENCY_MS = 20  # each way across regions: 40 ms round trip
KAFKA_PORT, KAFKA_CONTROLLER_PORT, KAFKA_WAN_PORT = 9092, 9093, 9094
WEAVIATE_HTTP_PORT, WEAVIATE_GRPC_PORT = 8080, 50051
WEAVIATE_PROXY_HTTP_PORT, WEAVIATE_PROXY_GRPC_PORT = 18080, 15051

WAN = Host("wan", "10.250.0.2", None)


@dataclass(frozen=True)
class Region:
    name: str
    head: Host
    worker: Host
    kafka_proxy_port: int  # on WAN: how the other region reaches this region's broker

    @property
    def hosts(self) -> list[Host]:
        return [self.head, self.worker]


REGIONS = (
    Region("a", Host("a-head", "10.250.0.11", "a"), Host("a-worker", "10.250.0.12", "a"), 19092),
    Region("b", Host("b-head", "10.250.0.21", "b"), Host("b-worker", "10.250.0.22", "b"), 29092),
)
WEAVIATE_HOST = REGIONS[0].head


def all_hosts() -> list[Host]:
    return [WAN, *(h for r in REGIONS for h in r.hosts)]


def region_hosts() -> list[Host]:
    """The hosts a Ray cluster runs on (everything but the WAN link), each with an sshd."""
    return [h for r in REGIONS for h in r.hosts]


def region(name: str) -> Region:
    return next(r for r in REGIONS if r.name == name)


def state_dir() -> Path:
    return paths.state_dir() / "sim"


def host_dir(host: Host) -> Path:
    return state_dir() / "hosts" / host.name


def ledger_file() -> Path:
    return state_dir() / "ledger.json"


def broker(r: Region) -> SimKafkaBroker:
    return SimKafkaBroker(KAFKA_PORT, KAFKA_CONTROLLER_PORT, state_dir=host_dir(r.head) / "kafka",
                          host=r.head.address, wan_port=KAFKA_WAN_PORT,
                          wan_advertised=f"{WAN.address}:{r.kafka_proxy_port}")


def weaviate() -> SimWeaviate:
    return SimWeaviate(WEAVIATE_HTTP_PORT, WEAVIATE_GRPC_PORT, state_dir=host_dir(WEAVIATE_HOST) / "weaviate",
                       host=WEAVIATE_HOST.address)


def services() -> dict[str, tuple[Host, SimKafkaBroker | SimWeaviate]]:
    """The services launch.py starts inside their host, by name."""
    out: dict[str, tuple[Host, SimKafkaBroker | SimWeaviate]] = {
        f"kafka-{r.name}": (r.head, broker(r)) for r in REGIONS}
    out["weaviate"] = (WEAVIATE_HOST, weaviate())
    return out


def toxiproxy() -> Toxiproxy:
    return Toxiproxy(WAN, host_dir(WAN))


def proxies() -> list[Proxy]:
    """Every path between regions: each broker's WAN listener, and Weaviate for region b."""
    out = [Proxy(f"kafka-{r.name}", f"{WAN.address}:{r.kafka_proxy_port}",
                 f"{r.head.address}:{KAFKA_WAN_PORT}", LATENCY_MS) for r in REGIONS]
    out += [Proxy("weaviate-http", f"{WAN.address}:{WEAVIATE_PROXY_HTTP_PORT}",
                  f"{WEAVIATE_HOST.address}:{WEAVIATE_HTTP_PORT}", LATENCY_MS),
            Proxy("weaviate-grpc", f"{WAN.address}:{WEAVIATE_PROXY_GRPC_PORT}",
                  f"{WEAVIATE_HOST.address}:{WEAVIATE_GRPC_PORT}", LATENCY_MS)]
    return out


def ssh_keys() -> SshKeys:
    return SshKeys(state_dir() / "ssh")


def sshds() -> list[Sshd]:
    keys = ssh_keys()
    return [Sshd(h, keys, host_dir(h)) for h in region_hosts()]


def daemons() -> list[Toxiproxy | Sshd]:
    """What `up` starts from the root namespace (the services start from inside their host)."""
    return [toxiproxy(), *sshds()]


@dataclass(frozen=True)
class Endpoints:
    """The addresses a client in one region uses: its own region direct, the other through WAN."""

    kafka: dict[str, str]  # region -> bootstrap servers
    weaviate_http: str
    weaviate_grpc: str  # host:port


def endpoints(seen_from: Region) -> Endpoints:
    same = seen_from.name == WEAVIATE_HOST.region
    return Endpoints(
        kafka={r.name: (f"{r.head.address}:{KAFKA_PORT}" if r == seen_from
                        else f"{WAN.address}:{r.kafka_proxy_port}") for r in REGIONS},
        weaviate_http=(f"http://{WEAVIATE_HOST.address}:{WEAVIATE_HTTP_PORT}" if same
                       else f"http://{WAN.address}:{WEAVIATE_PROXY_HTTP_PORT}"),
        weaviate_grpc=(f"{WEAVIATE_HOST.address}:{WEAVIATE_GRPC_PORT}" if same
                       else f"{WAN.address}:{WEAVIATE_PROXY_GRPC_PORT}"),
    )


def freshvec_config(source: Region, run_in: Region | None = None) -> dict[str, object]:
    """A freshvec config for `source`'s pipeline (its broker, topic `documents`) with the consumers on
    `run_in`'s nodes (default: `source`'s own), reaching broker and Weaviate as `run_in` does, so across
    the WAN when the two differ. `up` writes `source`'s own as .run/sim/freshvec-<region>.yaml."""
    run_in = run_in or source
    ends = endpoints(run_in)
    bootstrap = [ends.kafka[source.name]]
    return {
        "kafka": {"bootstrap_servers": bootstrap, "topics": ["documents"], "group_id": f"freshvec-{source.name}",
                  "partitions_if_created": 2, "consumer": {"fetch_min_bytes": 1, "fetch_max_wait_ms": 100}},
        # Each host is a Ray node of 1 CPU: up to two replicas and the consumers fit on a region's two.
        "embedding": {"num_cpus": 0.5, "threads": 1,
                      "autoscaling": {"min_replicas": 1, "max_replicas": 2, "policy": "backlog"}},
        "weaviate": {"host": ends.weaviate_http.removeprefix("http://").rsplit(":", 1)[0],
                     "http_port": int(ends.weaviate_http.rsplit(":", 1)[1]),
                     "grpc_port": int(ends.weaviate_grpc.rsplit(":", 1)[1]), "collection": "Document"},
        "pipeline": {"max_batch_wait_ms": 0, "dlq_topic": "documents.dlq"},
        "http": {"host": "0.0.0.0", "port": 8000},
        "regions": {source.name: {"bootstrap_servers": bootstrap, "label_key": "region", "label_value": run_in.name}},
    }


def config_file(r: Region) -> Path:
    return state_dir() / f"freshvec-{r.name}.yaml"


def describe() -> dict[str, object]:
    """Everything a caller needs to point `ray up` (provider local) and clients at the layout;
    `up` writes it to .run/sim/layout.json."""
    keys = ssh_keys()
    return {
        "ssh": {"user": USER, "private_key": str(keys.client_key), "config": str(keys.config),
                "known_hosts": str(keys.known_hosts)},
        "regions": {r.name: {"head_ip": r.head.address, "worker_ips": [r.worker.address], "config": str(config_file(r)),
                             "hosts": {h.name: h.address for h in r.hosts}, **asdict(endpoints(r))}
                    for r in REGIONS},
        "wan": {"address": WAN.address, "toxiproxy_api": toxiproxy().api, "latency_ms_each_way": LATENCY_MS,
                "proxies": {p.name: {"listen": p.listen, "upstream": p.upstream} for p in proxies()}},
    }
