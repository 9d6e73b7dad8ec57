"""Test hosts as network namespaces on one bridge.

Each host is a namespace `fvsim-<name>` with loopback up and one veth, `eth0`,
whose other end is plugged into the bridge `fvsim-br0` in the root namespace.
The bridge has an address too, so the root namespace reaches every host (ssh,
Toxiproxy's API), and each host's default route points at it, so programs that
find their own address by "routing towards the internet" (Ray does) get the
host's address; nothing is forwarded beyond the bridge (ip_forward is left as
it is). Everything carries the prefix, so `down` can sweep by name what a
failed run left behind, with or without the ledger.

Commands run on a host through `in_host`: `ip netns exec` (which also mounts
/etc/netns/<ns>/hosts over /etc/hosts, so host names resolve) and a UTS
namespace of its own, so `hostname` answers the host's name.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from freshvec.core.errors import SetupError
from freshvec.deploy.sim.ledger import Ledger

PREFIX = "fvsim-"
BRIDGE = PREFIX + "br0"
SUBNET = ipaddress.ip_network("10.250.0.0/24")
GATEWAY = "10.250.0.1"  # the bridge's address, in the root namespace
ETC_NETNS = Path("/etc/netns")


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    region: str | None  # None: a host of no region (the WAN link running the proxy)

    def __post_init__(self) -> None:
        if len(self.veth) > 15:  # IFNAMSIZ
            raise SetupError(f"host name {self.name!r} too long: {self.veth!r} must fit 15 characters")
        if ipaddress.ip_address(self.address) not in SUBNET:
            raise SetupError(f"host {self.name}: {self.address} is outside {SUBNET}")

    @property
    def namespace(self) -> str:
        return PREFIX + self.name

    @property
    def veth(self) -> str:
        """The root-namespace end of the host's veth; the host's own end is `eth0`."""
        return PREFIX + self.name


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode:
        raise SetupError(f"`ip {' '.join(args)}` failed: {proc.stderr.strip() or proc.returncode}")
    return proc


def in_host(host: Host, argv: list[str], private_tmp: Path | None = None, passwd: Path | None = None) -> list[str]:
    """`argv` as run on `host`: in its network namespace, with its hosts file and host name.

    With `private_tmp` (for the sshd, so for everything run over ssh) the command also gets a PID
    namespace of its own, where it is pid 1: `ps` or `ray stop` on a host then sees that host's
    processes only, never the machine's (a `ray stop` would otherwise kill every Ray on it), and
    when it dies everything started under it dies too. `private_tmp` is mounted over /tmp, so each
    host has its own /tmp (Ray keeps its session files there), as a real machine would; except when
    it lies under /tmp itself (a checkout there, as CI's clone): the mount would hide the checkout,
    sshd's config with it, so such hosts share /tmp. `passwd` is mounted over /etc/passwd: where
    the host's root has its own home, which is what ssh reads to expand `~` (not $HOME).
    """
    enter = ["ip", "netns", "exec", host.namespace, "unshare", "--uts"]
    if private_tmp is None:
        return [*enter, "--", "/bin/sh", "-c", 'hostname "$0" && exec "$@"', host.name, *argv]
    mount = "" if Path("/tmp") in Path(private_tmp).resolve().parents else 'mount --bind "$1" /tmp && '
    if passwd is not None:
        mount += 'mount --bind "$2" /etc/passwd && '
    return [*enter, "--pid", "--fork", "--kill-child", "--mount-proc", "--",
            "/bin/sh", "-c", f'hostname "$0" && {mount}shift 2 && exec "$@"',
            host.name, str(private_tmp), str(passwd or ""), *argv]


def namespaces() -> list[str]:
    """Namespaces with the prefix, whoever made them."""
    out = ip("netns", "list").stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(PREFIX)]


def links() -> list[str]:
    """Root-namespace links with the prefix (the bridge, veth ends)."""
    out = ip("-o", "link", "show").stdout
    names = (re.match(r"\d+: ([^:@]+)", line) for line in out.splitlines())
    return [m.group(1) for m in names if m and m.group(1).startswith(PREFIX)]


def namespace_inode(name: str) -> int | None:
    try:
        return os.stat(f"/run/netns/{name}").st_ino
    except FileNotFoundError:
        return None


def check_can_create() -> None:
    """Fail before creating anything if we are not root or the subnet is someone else's."""
    if os.geteuid() != 0:
        raise SetupError("the simulated layout needs root (network namespaces, veth, a bridge)")
    for tool in ("ip", "unshare", "hostname"):
        if shutil.which(tool) is None:
            raise SetupError(f"'{tool}' not found; install iproute2 / util-linux / hostname")
    for line in ip("-o", "-4", "addr", "show").stdout.splitlines():
        dev, addr = line.split()[1], line.split()[3]
        if not dev.startswith(PREFIX) and ipaddress.ip_interface(addr).network.overlaps(SUBNET):
            raise SetupError(f"{SUBNET} is already used by {dev} ({addr}); free it or change SUBNET")


def create_bridge(ledger: Ledger) -> None:
    if BRIDGE not in links():
        ledger.add_link(BRIDGE)
        ip("link", "add", BRIDGE, "type", "bridge")
    ip("addr", "replace", f"{GATEWAY}/{SUBNET.prefixlen}", "dev", BRIDGE)
    ip("link", "set", BRIDGE, "up")


def create_host(host: Host, all_hosts: list[Host], ledger: Ledger) -> None:
    """Make (or repair) one host: namespace, veth into the bridge, address, routes, hosts file."""
    ns = host.namespace
    write_hosts_file(host, all_hosts, ledger)
    if ns not in namespaces():
        ledger.add_namespace(ns)
        ip("netns", "add", ns)
    ledger.add_namespace(ns, namespace_inode(ns) or 0)
    if ip("-n", ns, "link", "show", "eth0", check=False).returncode:
        ip("link", "del", host.veth, check=False)  # a stale root end from a half-made host
        ledger.add_link(host.veth)
        ip("link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
    ip("link", "set", host.veth, "master", BRIDGE, "up")
    ip("-n", ns, "link", "set", "lo", "up")
    ip("-n", ns, "addr", "replace", f"{host.address}/{SUBNET.prefixlen}", "dev", "eth0")
    ip("-n", ns, "link", "set", "eth0", "up")
    ip("-n", ns, "route", "replace", "default", "via", GATEWAY, "dev", "eth0")


def write_hosts_file(host: Host, all_hosts: list[Host], ledger: Ledger) -> None:
    """/etc/hosts as the host sees it: its own name and every other test host's."""
    folder = ETC_NETNS / host.namespace
    if not ETC_NETNS.exists():
        ledger.add_path(ETC_NETNS)
    ledger.add_path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["127.0.0.1\tlocalhost", *(f"{h.address}\t{h.name}" for h in all_hosts)]
    (folder / "hosts").write_text("\n".join(lines) + "\n")


def processes_in(inodes: set[int]) -> list[tuple[int, str]]:
    """(pid, command name) of every process whose network namespace is one of `inodes`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            link = os.readlink(entry / "ns" / "net")  # "net:[4026532288]"
            if int(link[5:-1]) in inodes:
                found.append((int(entry.name), (entry / "comm").read_text().strip()))
        except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
            continue
    return found


def kill(pids: list[int], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL what is left after `timeout`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while (pids := [p for p in pids if _alive(p)]) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not pids:
            return


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    if state == "Z":
        try:
            os.waitpid(pid, os.WNOHANG)  # ours: reap it; not ours: init will
        except ChildProcessError:
            pass
        return False
    return True


def remove_all(ledger: Ledger) -> list[str]:
    """Kill every process in our namespaces, then delete namespaces, links and hosts files.

    Works from the ledger and from a sweep by prefix, so a half-made layout goes too.
    Returns what it removed, for the caller to print.
    """
    removed = []
    names = sorted(set(ledger.namespaces) | set(namespaces()))
    inodes = {i for i in ledger.namespaces.values() if i} | {i for n in names if (i := namespace_inode(n))}
    killed: dict[int, str] = {}
    for _ in range(5):  # again: a launcher can fork between the scan and its own death
        procs = processes_in(inodes)
        if not procs:
            break
        killed |= dict(procs)
        kill([pid for pid, _ in procs])
    if killed:
        removed.append(f"{len(killed)} processes ({', '.join(sorted(set(killed.values())))})")
    for ns in names:
        if ip("netns", "del", ns, check=False).returncode == 0:
            removed.append(f"namespace {ns}")
    present = links()
    for link in sorted(set(ledger.links) | set(present), key=lambda n: n == BRIDGE):  # veths first
        if link in present and ip("link", "del", link, check=False).returncode == 0:
            removed.append(f"link {link}")
    deadline = time.monotonic() + 5  # a deleted namespace's veth ends go asynchronously
    while links() and time.monotonic() < deadline:
        time.sleep(0.1)
    folders = {Path(p) for p in ledger.paths if Path(p).parent == ETC_NETNS}
    folders |= set(ETC_NETNS.glob(PREFIX + "*")) if ETC_NETNS.exists() else set()
    for folder in sorted(folders):
        if folder.exists():
            shutil.rmtree(folder)
            removed.append(f"{folder}")
    if ETC_NETNS.exists() and not any(ETC_NETNS.iterdir()):
        ETC_NETNS.rmdir()  # only `ip netns exec` reads it, and it does without
    return removed
