"""Toxiproxy: the delay between regions, added in user space.

This kernel has no netem qdisc, so packets cannot be delayed; instead every
cross-region TCP path goes through a Toxiproxy proxy with a latency toxic on
each direction (20 ms + 20 ms = 40 ms round trip). Built once with `go install`
from its Go module; the binary and Go's caches live under
$FRESHVEC_CACHE/toxiproxy/<version>, so a second `up` starts at once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx

from freshvec.core.errors import ServiceError, SetupError
from freshvec.deploy.local import paths
from freshvec.deploy.local.process import ServiceProcess
from freshvec.deploy.sim.hosts import Host, in_host

VERSION = "v2.5.0"
# v2.5.0 keeps its server in cmd/server (later tags moved it to cmd/toxiproxy-server).
PACKAGE = "github.com/Shopify/toxiproxy/v2/cmd/server"


def cache() -> Path:
    return paths.cache_dir() / "toxiproxy" / VERSION


def binary() -> Path:
    return cache() / "toxiproxy-server"


def ensure_built() -> Path:
    """The toxiproxy-server binary, built on first use (about a minute on 2 cores)."""
    target = binary()
    if target.exists():
        return target
    if shutil.which("go") is None:
        raise SetupError("'go' not found; Go is needed to build toxiproxy-server")
    gobin = cache() / "bin.tmp"
    shutil.rmtree(gobin, ignore_errors=True)
    env = {**os.environ, "GOTOOLCHAIN": "local", "CGO_ENABLED": "0", "GOBIN": str(gobin),
           "GOPATH": str(cache() / "go"), "GOCACHE": str(cache() / "go" / "build"),
           "GOMODCACHE": str(cache() / "go" / "mod"),
           # -modcacherw: a module cache `rm -rf` can delete.
           "GOFLAGS": " ".join(filter(None, [os.environ.get("GOFLAGS", ""), "-modcacherw"]))}
    proc = subprocess.run(["go", "install", "-trimpath", "-ldflags=-s -w", f"{PACKAGE}@{VERSION}"],
                          env=env, capture_output=True, text=True)
    if proc.returncode:
        last = proc.stderr.strip().splitlines()[-1:] or ["?"]
        raise SetupError(f"building toxiproxy-server {VERSION} failed: {last[0]}")
    # Moved into place only when complete, so a cut-short build is never taken for a cached one.
    os.replace(gobin / "server", target)
    shutil.rmtree(gobin, ignore_errors=True)
    return target


@dataclass(frozen=True)
class Proxy:
    name: str
    listen: str  # host:port on the proxy's host
    upstream: str  # host:port it forwards to
    latency_ms: int  # added each way

    def toxics(self) -> list[dict]:
        return [{"name": f"latency_{stream}", "type": "latency", "stream": stream, "toxicity": 1.0,
                 "attributes": {"latency": self.latency_ms, "jitter": 0}}
                for stream in ("upstream", "downstream")]


@dataclass
class Toxiproxy:
    host: Host
    state_dir: Path
    port: int = 8474  # the HTTP API, on the host's address

    def __post_init__(self) -> None:
        self.process = ServiceProcess(
            name=f"toxiproxy {self.host.address}:{self.port}",
            pid_file=self.state_dir / "toxiproxy.pid",
            log_file=self.state_dir / "toxiproxy.log",
            marker=f"-host {self.host.address} -port {self.port}",
        )

    @property
    def api(self) -> str:
        return f"http://{self.host.address}:{self.port}"

    def is_running(self) -> bool:
        return self.process.pid() is not None

    def start(self, timeout: float = 15.0) -> None:
        if self.is_running():
            return
        server = ensure_built()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.process.spawn(in_host(self.host, [str(server), "-host", self.host.address, "-port", str(self.port)]),
                           env={**os.environ, "LOG_LEVEL": "warn"})
        self.process.wait_until(lambda: self._get("/version").status_code == 200, timeout, "answering")

    def apply(self, proxies: list[Proxy]) -> None:
        """Create or repair the proxies and their toxics; leaves other proxies alone."""
        reply = self._post("/populate", [{"name": p.name, "listen": p.listen, "upstream": p.upstream,
                                          "enabled": True} for p in proxies])
        if reply.status_code not in (200, 201):
            raise ServiceError(f"toxiproxy refused the proxies: {reply.status_code} {reply.text.strip()}")
        for proxy in proxies:
            have = {t["name"] for t in self._get(f"/proxies/{proxy.name}/toxics").json()}
            for toxic in proxy.toxics():
                path = f"/proxies/{proxy.name}/toxics" + (f"/{toxic['name']}" if toxic["name"] in have else "")
                reply = self._post(path, toxic)
                if reply.status_code not in (200, 201):
                    raise ServiceError(f"toxiproxy refused toxic {toxic['name']} on {proxy.name}: "
                                       f"{reply.status_code} {reply.text.strip()}")

    def proxies(self) -> dict[str, dict]:
        """Toxiproxy's own view: name -> {listen, upstream, enabled, toxics}."""
        return self._get("/proxies").json()

    def stop(self) -> bool:
        return self.process.stop(timeout=5.0)

    # trust_env off: the API is on the bridge, never behind an HTTP proxy from the environment.
    def _get(self, path: str) -> httpx.Response:
        return httpx.get(self.api + path, timeout=5, trust_env=False)

    def _post(self, path: str, body: object) -> httpx.Response:
        return httpx.post(self.api + path, json=body, timeout=5, trust_env=False)
