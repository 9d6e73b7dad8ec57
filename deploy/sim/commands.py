"""up, down and status of the simulated two-region layout.

`up` is idempotent: whatever exists and runs is kept, whatever is missing is
made, so a second `up` is a quick check and also repairs a half-done one.
`down` removes every namespace, link, process and file `up` made, from the
ledger and from a sweep by name prefix, so it also cleans up after a failed or
interrupted `up` (or a lost state dir).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from freshvec.core import errors
from freshvec.core.errors import ServiceError
from freshvec.deploy.local import paths
from freshvec.deploy.sim import hosts, layout, sshd, toxiproxy
from freshvec.deploy.sim.hosts import Host
from freshvec.deploy.sim.ledger import Ledger


def up() -> None:
    start = time.monotonic()
    # Everything that can be missing is checked or built before anything is created.
    hosts.check_can_create()
    paths.kafka_libs()  # made by `make setup`: fail at once, before the slow steps below
    paths.weaviate_binary()
    if not sshd.SSHD.exists() or not shutil.which("rsync"):
        step = time.monotonic()
        sshd.ensure_installed()
        print(f"openssh-server, rsync: installed with apt-get ({time.monotonic() - step:.1f} s)")
    if not toxiproxy.binary().exists():
        step = time.monotonic()
        toxiproxy.ensure_built()
        print(f"toxiproxy-server {toxiproxy.VERSION}: built into {toxiproxy.cache()} ({time.monotonic() - step:.1f} s)")
    print(f"prerequisites: ok ({time.monotonic() - start:.1f} s)")

    ledger = Ledger.load(layout.ledger_file())
    hosts.create_bridge(ledger)
    for host in layout.all_hosts():
        hosts.create_host(host, layout.all_hosts(), ledger)
    print(f"network: {hosts.BRIDGE} {hosts.GATEWAY}/{hosts.SUBNET.prefixlen}, "
          f"{len(layout.all_hosts())} hosts ({time.monotonic() - start:.1f} s)")

    layout.ssh_keys().ensure(layout.region_hosts())
    for server in layout.sshds():
        server.start(ledger)
    proxy = layout.toxiproxy()
    proxy.start()
    proxy.apply(layout.proxies())
    print(f"sshd on {len(layout.region_hosts())} hosts, toxiproxy on {layout.WAN.name} "
          f"({time.monotonic() - start:.1f} s)")

    names = list(layout.services())
    with ThreadPoolExecutor(len(names)) as pool:  # the JVMs and Weaviate start side by side
        failures = [exc for exc in pool.map(_launch, names) if exc]
    if failures:
        raise failures[0]
    for r in layout.REGIONS:
        layout.config_file(r).write_text(f"# region {r.name}'s pipeline on region {r.name}'s hosts (make sim-up)\n"
                                         + yaml.safe_dump(layout.freshvec_config(r), sort_keys=False))
    (layout.state_dir() / "layout.json").write_text(json.dumps(layout.describe(), indent=2) + "\n")
    _print_summary()
    print(f"up in {time.monotonic() - start:.1f} s")


def _launch(name: str) -> errors.FreshvecError | None:
    """Start a service inside its host with launch.py; its error, as the same class, if it failed."""
    host, service = layout.services()[name]
    if service.is_running():
        return None
    proc = subprocess.run(hosts.in_host(host, [sys.executable, "-m", "freshvec.deploy.sim.launch", name]),
                          capture_output=True, text=True)
    if proc.returncode == 0:
        return None
    lines = proc.stderr.strip().splitlines()
    for i, line in enumerate(lines):  # launch.py prints "<ErrorClass>: <message>", maybe after other output
        kind, sep, first = line.partition(": ")
        cls = getattr(errors, kind, None)
        if sep and isinstance(cls, type) and issubclass(cls, errors.FreshvecError):
            return cls("\n".join([f"{name} on {host.name}: {first}", *lines[i + 1:]]))
    return ServiceError(f"{name} on {host.name}: launcher exited {proc.returncode}: "
                        f"{proc.stderr.strip()[-500:] or 'no output'}")


def down() -> None:
    start = time.monotonic()
    ledger = Ledger.load(layout.ledger_file())
    # Politely first, so Kafka shuts down cleanly; the sweep below kills whatever is left.
    for name, (_, service) in layout.services().items():
        if service.is_running():
            service.stop(timeout=20.0)
            print(f"stopped {name}")
    for stoppable in layout.daemons():
        if stoppable.is_running():
            stoppable.stop()
            print(f"stopped {stoppable.process.name}")
    for item in hosts.remove_all(ledger):
        print(f"removed {item}")
    leftovers = _processes_naming(layout.state_dir())
    if leftovers:
        hosts.kill(leftovers)
        print(f"killed {len(leftovers)} processes outside the namespaces that named {layout.state_dir()}")
    for made in map(Path, ledger.paths):
        if made == sshd.PRIVSEP_DIR and made.exists() and not any(made.iterdir()):
            made.rmdir()
            print(f"removed {made}")
    shutil.rmtree(layout.state_dir(), ignore_errors=True)
    print(f"down in {time.monotonic() - start:.1f} s")


def _processes_naming(folder: Path) -> list[int]:
    """Pids outside the root network namespace whose command line names `folder`: a service whose
    namespace lost its name before `down` could find it. (A `less` of a log file in the root
    namespace is left alone.)"""
    needle, root_net = str(folder).encode(), os.readlink("/proc/self/ns/net")
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "cmdline").read_bytes() and os.readlink(entry / "ns" / "net") != root_net:
                    found.append(int(entry.name))
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
    return found


def status() -> None:
    present = set(hosts.namespaces())
    if not present and not hosts.links():
        print("down: no namespace or link with prefix " + hosts.PREFIX)
        return
    print("hosts:")
    for host in layout.all_hosts():
        inode = hosts.namespace_inode(host.namespace)
        procs = hosts.processes_in({inode}) if inode else []
        names = ", ".join(f"{comm} {pid}" for pid, comm in procs) or "no processes"
        state = "up" if host.namespace in present else "MISSING"
        print(f"  {host.name:<9} {host.address:<12} region {host.region or '-'}  {state:<7} {names}")
    print("services:")
    for name, (host, service) in layout.services().items():
        pid = service.process.pid()
        print(f"  {name:<14} on {host.name:<9} {f'running (pid {pid})' if pid else 'stopped'}")
    for stoppable in layout.daemons():
        pid = stoppable.process.pid()
        print(f"  {stoppable.process.name:<40} {f'running (pid {pid})' if pid else 'stopped'}")
    proxy = layout.toxiproxy()
    if proxy.is_running():
        print("proxies (toxiproxy):")
        for name, p in sorted(proxy.proxies().items()):
            delays = "+".join(f"{t['attributes']['latency']}" for t in p["toxics"] if t["type"] == "latency")
            print(f"  {name:<14} {p['listen']:<18} -> {p['upstream']:<18} latency {delays or 0} ms")
    _print_summary()
    print("round trips (median of 10 requests on one connection):")
    for r in layout.REGIONS:
        _print_rtts(r.worker, _targets(r))


def _targets(seen_from: layout.Region) -> list[tuple[str, str, str]]:
    """(label, probe kind, target) for a client in `seen_from`: each broker, and Weaviate."""
    ends = layout.endpoints(seen_from)
    out = [(f"kafka {name} ({'within' if name == seen_from.name else 'across'})", "kafka", addr)
           for name, addr in ends.kafka.items()]
    across = seen_from.name != layout.WEAVIATE_HOST.region
    out.append((f"weaviate ({'across' if across else 'within'})", "http",
                f"{ends.weaviate_http.removeprefix('http://')}/v1/.well-known/ready"))
    return out


def _print_rtts(host: Host, targets: list[tuple[str, str, str]]) -> None:
    if host.namespace not in hosts.namespaces():
        print(f"  from {host.name}: host missing")
        return
    args = [a for _, kind, target in targets for a in (kind, target)]
    proc = subprocess.run(["ip", "netns", "exec", host.namespace, sys.executable, "-m",
                           "freshvec.deploy.sim.probe", *args], capture_output=True, text=True, timeout=60)
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    for (label, _, target), res in zip(targets, results, strict=False):  # a crashed probe prints fewer lines
        figure = (f"{res['median_ms']:6.2f} ms (min {res['min_ms']:.2f})" if "median_ms" in res
                  else f"error: {res.get('error')}")
        print(f"  from {host.name:<9} to {label:<20} {target.split('/')[0]:<18} {figure}")


def _print_summary() -> None:
    print("as seen from each region:")
    for r in layout.REGIONS:
        ends = layout.endpoints(r)
        kafka = ", ".join(f"{name}={addr}" for name, addr in ends.kafka.items())
        print(f"  region {r.name}: head {r.head.address}, worker {r.worker.address}; kafka {kafka}; "
              f"weaviate {ends.weaviate_http} (gRPC {ends.weaviate_grpc})")
    keys = layout.ssh_keys()
    print(f"ssh: user {sshd.USER}, key {keys.client_key}  (ssh -F {keys.config} a-head)")
