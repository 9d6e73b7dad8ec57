"""Ray settings for a latency-bound pipeline: environment variables read when Ray's processes start.

Ray reads them in the raylet, Serve in its controller, proxies and replicas, so they belong in the
environment of `ray start` (the ray up YAMLs put them there) or of the process whose `ray.init`
starts a local cluster (`freshvec run`, the tests and the benchmarks call `apply_local`). A driver joining a
running cluster cannot change them. What each setting bought is measured in bench/README.md.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

ENV = {
    # Ray starts its workers at niceness 15, below Kafka and Weaviate on the same node: under load
    # the consumers and the embedder then wait for the brokers' spare CPU, and events queue.
    "RAY_worker_niceness": "0",
    # gRPC between handles and replicas, each ingress replica serving HTTP itself (direct ingress),
    # user code on the replica's own event loop, garbage collector frozen after start-up.
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    # HAProxy, in C, on http.port in front of the replicas instead of Serve's Python proxy actor:
    # the Python proxy alone took about 0.4 of a core at 16 concurrent clients.
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    # The consumers call handles from plain threads; the optimized mode's in-loop router refuses that.
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "1",
}


def apply(environ: MutableMapping[str, str] = os.environ) -> None:
    """Set what the caller has not set already, before Ray starts."""
    for key, value in ENV.items():
        environ.setdefault(key, value)


def shell_prefix() -> str:
    """`KEY=value ...` for the front of a `ray start` command line."""
    return " ".join(f"{key}={value}" for key, value in ENV.items())


def haproxy_dir(http_port: int) -> Path:
    """Where a local run's HAProxy keeps its config and sockets: one folder per HTTP port.

    Serve's default, /tmp/haproxy-serve, is shared by every cluster on the machine; a folder of the
    run's own lets two runs coexist and lets the next run recognise a dead one's HAProxy
    (cluster/leftovers.py).
    """
    return Path("/tmp") / f"freshvec-haproxy-{http_port}"


def apply_local(http_port: int | None = None, environ: MutableMapping[str, str] = os.environ) -> Path | None:
    """`apply`, plus what a cluster this process starts for itself wants (`freshvec run`, the tests, the
    benchmarks): no auth on a loopback-only cluster, short drains, and with `http_port` the HAProxy
    files in `haproxy_dir(http_port)`, which it returns."""
    apply(environ)
    environ.setdefault("HF_HUB_OFFLINE", "1")  # models load from disk only
    environ.setdefault("RAY_AUTH_MODE", "disabled")
    # A stopping replica keeps serving 30 s so that outside load balancers can drop it; a local run's
    # only balancer is its own HAProxy, and Ctrl-C (or each serve.shutdown() of a test) would wait 30 s.
    environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "1")
    environ.setdefault("RAY_SERVE_PROXY_MIN_DRAINING_PERIOD_S", "1")
    if http_port is None:
        return None
    folder = haproxy_dir(http_port)
    folder.mkdir(exist_ok=True)
    for key, name in (("RAY_SERVE_HAPROXY_CONFIG_FILE_LOC", "haproxy.cfg"), ("RAY_SERVE_HAPROXY_SOCKET_PATH", "admin.sock"),
                      ("RAY_SERVE_HAPROXY_SERVER_STATE_BASE", ""), ("RAY_SERVE_HAPROXY_SERVER_STATE_FILE", "server-state"),
                      ("RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH", "metrics.sock")):
        environ.setdefault(key, str(folder / name) if name else str(folder))
    return folder
