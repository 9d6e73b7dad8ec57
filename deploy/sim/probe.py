"""Round-trip times as a client on a test host sees them.

Run inside a host's namespace (status.py does `ip netns exec ... -m
freshvec.deploy.sim.probe`). A TCP connect cannot show the WAN delay, because
Toxiproxy accepts at once and delays only the bytes, so each probe times a real
request and its answer on one open connection: a Kafka ApiVersions request, or
an HTTP GET. Prints one JSON object per target: median and min in ms.

    python -m freshvec.deploy.sim.probe kafka 10.250.0.2:19092 http 10.250.0.11:8080/v1/.well-known/ready
"""

from __future__ import annotations

import http.client
import json
import socket
import statistics
import struct
import sys
import time

ROUNDS = 10


def kafka_rtt(address: str, rounds: int = ROUNDS) -> list[float]:
    """ApiVersions v0 (any broker answers it, even one that refuses the version) round trips."""
    host, port = address.rsplit(":", 1)
    times = []
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for correlation_id in range(rounds):
            client_id = b"fvsim-probe"
            body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
            start = time.perf_counter()
            sock.sendall(struct.pack(">i", len(body)) + body)
            size = struct.unpack(">i", _read(sock, 4))[0]
            _read(sock, size)
            times.append((time.perf_counter() - start) * 1000)
    return times


def http_rtt(target: str, rounds: int = ROUNDS) -> list[float]:
    """GET `path` on a kept-alive connection; `target` is host:port/path."""
    address, _, path = target.partition("/")
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    times = []
    try:
        for _ in range(rounds):
            start = time.perf_counter()
            conn.request("GET", "/" + path)
            conn.getresponse().read()
            times.append((time.perf_counter() - start) * 1000)
    finally:
        conn.close()
    return times


def _read(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    for kind, target in zip(args[::2], args[1::2], strict=False):
        result: dict[str, object] = {"kind": kind, "target": target}
        try:
            times = (kafka_rtt if kind == "kafka" else http_rtt)(target)
            result |= {"median_ms": round(statistics.median(times), 2), "min_ms": round(min(times), 2)}
        except OSError as exc:
            result["error"] = str(exc) or type(exc).__name__
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
