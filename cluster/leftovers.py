"""What a killed `freshvec run` leaves behind, found before the next run starts.

Ray's own processes share the fate of the driver that started them, so a run killed with SIGKILL
(OOM, kill -9, a closed terminal) takes them along. The HAProxy that Serve's high-throughput mode
starts does not: it is a child of a Ray worker, outlives it, keeps `http.port`, and the next run's
HAProxy then fails with "Some protocols failed to start their listeners". Each local run gives its
HAProxy a folder of its own, named for the port (`ray_env.haproxy_dir`), so an HAProxy whose config
lies there and whose parent is gone is provably a dead run's, and is stopped. Anything else on the
port is named, not touched.
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path

import psutil

from freshvec.core.errors import PortInUseError


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def listeners(port: int) -> list[psutil.Process]:
    """The processes listening on TCP `port` (any address)."""
    pids = {c.pid for c in psutil.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid}
    out = []
    for pid in sorted(pids):
        try:
            out.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    return out


def orphaned_haproxy(proc: psutil.Process, haproxy_dir: Path) -> bool:
    """An HAProxy started with a config in `haproxy_dir` whose Ray worker parent is gone."""
    try:
        cmdline = proc.cmdline()
        parent = proc.parent()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    if not cmdline or "haproxy" not in Path(cmdline[0]).name:
        return False
    owned = any(haproxy_dir in Path(arg).parents for arg in cmdline[1:] if arg.endswith(".cfg"))
    # Orphans are adopted by init (pid 1) or by a subreaper; a live run's HAProxy has a Ray worker parent.
    alive_parent = parent is not None and parent.pid != 1 and parent.name().startswith("ray::")
    return owned and not alive_parent


def _describe(proc: psutil.Process) -> str:
    try:
        return f"pid {proc.pid} ({' '.join(proc.cmdline())[:120]})"
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return f"pid {proc.pid}"


def clear_port(host: str, port: int, haproxy_dir: Path, what: str) -> list[str]:
    """Make sure `port` is free: stop a dead run's HAProxy on it, else raise naming the holder.

    Returns a line per process stopped. `what` names the setting, for the message.
    """
    if port_free(host, port):
        return []
    stopped, killed, others = [], [], []
    for proc in listeners(port):
        if orphaned_haproxy(proc, haproxy_dir):
            stopped.append(f"stopped HAProxy {_describe(proc)}, left on port {port} by a run that was killed")
            proc.kill()
            killed.append(proc)
        else:
            others.append(proc)
    psutil.wait_procs(killed, timeout=5)
    if port_free(host, port):
        return stopped
    holder = _describe(others[0]) if others else "a process this user cannot see"
    raise PortInUseError(f"port {port} ({what}) is in use by {holder}; stop it, or set {what} to a free port")
