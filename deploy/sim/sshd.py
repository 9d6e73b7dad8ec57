"""An sshd on each test host, so `ray up` (provider local) can reach it like a machine.

Keys are made at run time under the state dir and die with it: one client key
pair (root's login on every host, and nothing else: no password, no PAM) and one
ed25519 host key per host. A known_hosts and an ssh config naming every host are
written next to them, so checking host keys stays on:

    ssh -F .run/sim/ssh/config a-head hostname

Each sshd runs in the foreground (-D) as a tracked ServiceProcess, logs to its
own file and listens on its host's address only. What runs over ssh sees a host
of its own, as on separate machines: its own processes (a PID namespace, see
hosts.in_host), its own /tmp, and its own HOME, because `ray up` writes
~/ray_bootstrap_config.yaml and ~/ray_bootstrap_key.pem on each head and the
autoscaler rereads them: two heads sharing /root would read each other's. The
home is root's in the host's own /etc/passwd (mounted over the machine's), since
ssh expands `~` in `-i ~/ray_bootstrap_key.pem` from there, not from $HOME. That
home's .bashrc and .profile source root's, with HOME=/root while they run, so
PATH (pyenv, go) is the same.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from freshvec.core.errors import ServiceError, SetupError
from freshvec.deploy.local.process import ServiceProcess, port_open
from freshvec.deploy.sim.hosts import Host, in_host
from freshvec.deploy.sim.ledger import Ledger

SSHD = Path("/usr/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")  # sshd refuses to start without it; the init script would make it
USER = "root"


def ensure_installed() -> None:
    """openssh-server (and rsync, with which `ray up` copies its files) from Debian's packages, once;
    the image's policy-rc.d keeps the system sshd from starting."""
    if SSHD.exists() and shutil.which("rsync"):
        return
    if shutil.which("apt-get") is None:
        raise SetupError(f"{SSHD} or rsync not found and no apt-get to install openssh-server and rsync")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    proc = subprocess.run(["apt-get", "install", "-y", "-q", "openssh-server", "rsync"], env=env,
                          capture_output=True, text=True)
    if proc.returncode or not SSHD.exists() or not shutil.which("rsync"):
        last = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["?"]
        raise SetupError(f"apt-get install openssh-server rsync failed: {last[0]}")


@dataclass
class SshKeys:
    """The client key, host keys, authorized_keys, known_hosts and ssh config of one layout."""

    folder: Path

    @property
    def client_key(self) -> Path:
        return self.folder / "id_ed25519"

    @property
    def authorized_keys(self) -> Path:
        return self.folder / "authorized_keys"

    @property
    def known_hosts(self) -> Path:
        return self.folder / "known_hosts"

    @property
    def config(self) -> Path:
        return self.folder / "config"

    def host_key(self, host: Host) -> Path:
        return self.folder / "hosts" / host.name / "ssh_host_ed25519_key"

    def ensure(self, hosts: list[Host]) -> None:
        """Make whatever key is missing; rewrite the files derived from them."""
        _keygen(self.client_key, f"freshvec-sim-{USER}")
        for host in hosts:
            _keygen(self.host_key(host), f"freshvec-sim-{host.name}")
        self.authorized_keys.write_text(Path(f"{self.client_key}.pub").read_text())
        self.authorized_keys.chmod(0o600)
        self.known_hosts.write_text("".join(
            f"{h.name},{h.address} {' '.join(Path(f'{self.host_key(h)}.pub').read_text().split()[:2])}\n"
            for h in hosts))
        entries = [f"Host {h.name} {h.address}\n  HostName {h.address}\n" for h in hosts]
        self.config.write_text("".join(entries) + (
            f"Host *\n  User {USER}\n  IdentityFile {self.client_key}\n  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {self.known_hosts}\n  StrictHostKeyChecking yes\n"
            "  BatchMode yes\n  ConnectTimeout 5\n"))


def _keygen(path: Path, comment: str) -> None:
    if path.exists() and Path(f"{path}.pub").exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True)


@dataclass
class Sshd:
    host: Host
    keys: SshKeys
    state_dir: Path  # this host's folder under the layout's state dir
    port: int = 22

    def __post_init__(self) -> None:
        self.process = ServiceProcess(
            name=f"sshd {self.host.name} {self.host.address}:{self.port}",
            pid_file=self.state_dir / "sshd.pid",
            log_file=self.state_dir / "sshd.log",
            marker=str(self.config_file),
        )

    @property
    def config_file(self) -> Path:
        return self.state_dir / "sshd_config"

    @property
    def home(self) -> Path:
        return self.state_dir / "home"

    @property
    def passwd(self) -> Path:
        return self.state_dir / "passwd"

    @property
    def tmp(self) -> Path:
        return self.state_dir / "tmp"

    def config(self) -> str:
        # StrictModes off: the keys are in the clone's .run/, whose modes sshd would check like a home's.
        return "\n".join([
            f"ListenAddress {self.host.address}:{self.port}",
            f"HostKey {self.keys.host_key(self.host)}",
            f"AuthorizedKeysFile {self.keys.authorized_keys}",
            f"AllowUsers {USER}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "PidFile none",  # the ServiceProcess pid file tracks it
            "PrintMotd no",
            "AcceptEnv LANG LC_*",
            # Who and where the session is, for scripts run over ssh.
            f"SetEnv FRESHVEC_SIM_HOST={self.host.name} FRESHVEC_SIM_REGION={self.host.region or ''}",
            "Subsystem sftp internal-sftp",
            "",
        ])

    def is_running(self) -> bool:
        return self.process.pid() is not None

    def start(self, ledger: Ledger, timeout: float = 15.0) -> None:
        if self.is_running():
            return
        if not PRIVSEP_DIR.exists():
            ledger.add_path(PRIVSEP_DIR)
            PRIVSEP_DIR.mkdir(mode=0o755)
        self._make_home()
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.tmp.chmod(0o1777)
        self.config_file.write_text(self.config())
        check = subprocess.run([str(SSHD), "-t", "-f", str(self.config_file)], capture_output=True, text=True)
        if check.returncode:
            raise ServiceError(f"{self.process.name}: config refused: {check.stderr.strip()}")
        outer = self.process.spawn(in_host(self.host, [str(SSHD), "-D", "-e", "-f", str(self.config_file)],
                                           private_tmp=self.tmp, passwd=self.passwd))
        self.process.wait_until(lambda: port_open(self.port, self.host.address), timeout, "listening")
        # Track sshd itself, not the `unshare` above it, which ignores SIGTERM: stopping sshd (pid 1 of
        # the host's PID namespace) ends everything started over ssh, and then `unshare`.
        children = Path(f"/proc/{outer}/task/{outer}/children").read_text().split()
        if not children:
            raise ServiceError(f"{self.process.name}: sshd not found under unshare (pid {outer})")
        self.process.pid_file.write_text(children[0])

    def _make_home(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        users = Path("/etc/passwd").read_text().splitlines()
        self.passwd.write_text("".join(
            ":".join(f[:5] + [str(self.home)] + f[6:]) + "\n" if (f := line.split(":"))[0] == USER else line + "\n"
            for line in users))
        for name in (".bashrc", ".profile"):
            (self.home / name).write_text(
                f"# Home of simulated host {self.host.name}: root's {name}, read with root's HOME.\n"
                f"HOME=/root; [ -f /root/{name} ] && . /root/{name}; HOME={self.home}; export HOME\n")

    def stop(self) -> bool:
        return self.process.stop(timeout=5.0)
