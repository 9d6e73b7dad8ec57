"""A background service process tracked by a pid file.

The local stack's scripts start Kafka and Weaviate detached (own session) so
they outlive the command that started them; `stop` finds them again by pid and
checks the command line, so a recycled pid is never killed by mistake.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from freshvec.core.errors import ServiceError


@dataclass
class ServiceProcess:
    name: str
    pid_file: Path
    log_file: Path
    marker: str  # a string that must be in the process's command line
    _child: subprocess.Popen | None = None

    def pid(self) -> int | None:
        """The pid of the running service, or None when it is not running."""
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        if self.marker not in cmdline:
            return None
        # A zombie (exited, not reaped by a parent in this process) is not running.
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, IndexError):
            return None
        return None if state == "Z" else pid

    def spawn(self, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            self._child = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, cwd=cwd, start_new_session=True,
            )
        self.pid_file.write_text(str(self._child.pid))
        return self._child.pid

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll `ready` until it holds; fail early, with the log's tail, if the process died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # Ask the child we spawned, not /proc: a JVM's cmdline can read empty while it starts.
            exited = self._child.poll() is not None if self._child else self.pid() is None
            if exited:
                raise ServiceError(f"{self.name} exited while starting; last log lines:\n{self.log_tail()}")
            try:
                if ready():
                    return
            except Exception:  # not up yet: any failure of the probe means "try again"
                pass
            time.sleep(0.25)
        raise ServiceError(f"{self.name} not {what} after {timeout:.0f} s; last log lines:\n{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM (graceful shutdown), SIGKILL after `timeout`. False if it was not running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.pid() is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.pid() is not None:
            os.kill(pid, signal.SIGKILL)
            while self.pid() is not None:
                time.sleep(0.05)
        _reap(pid)
        self.pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _reap(pid: int) -> None:
    """Collect the exit status when we are the parent, so no zombie is left behind."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
