"""A region's Ray cluster on the simulated hosts, launched the way the README tells a user to.

`freshvec cluster-yaml --provider local` writes the `ray up` config from the region's
config (.run/sim/freshvec-<region>.yaml, written by `up`); `ray up` starts Ray on
the region's head over SSH, whose autoscaler then starts the worker; jobs go to the
head's dashboard (`ray job submit`); `ray down` stops it. Every step is the real CLI
in a subprocess, so what the test and `make sim-regions` run is what a user types.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from freshvec.core.errors import ServiceError
from freshvec.deploy.sim import layout

BIN = Path(sys.executable).parent
PROJECT = Path(__file__).resolve().parents[2]
DONE = ("SUCCEEDED", "FAILED", "STOPPED")


def described() -> dict:
    """.run/sim/layout.json, as `up` wrote it."""
    path = layout.state_dir() / "layout.json"
    if not path.exists():
        raise ServiceError(f"the simulated layout is not up ({path} is missing): run `make sim-up`")
    return json.loads(path.read_text())


def ray_up_file(region: str) -> Path:
    return layout.state_dir() / f"ray-up-{region}.yaml"


def dashboard(region: str) -> str:
    return f"http://{layout.region(region).head.address}:8265"


def _run(argv: list[str], timeout: float) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=PROJECT)
    if proc.returncode:
        raise ServiceError(f"`{' '.join(Path(a).name if i == 0 else a for i, a in enumerate(argv[:3]))}` "
                           f"failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    return proc.stdout


def write_ray_up(region: str) -> Path:
    """`freshvec cluster-yaml --provider local` for the region's hosts, SSH key and this checkout."""
    lay, r = described(), layout.region(region)
    out = ray_up_file(region)
    _run([str(BIN / "freshvec"), "-c", str(layout.config_file(r)), "cluster-yaml", "--provider", "local",
          "--region", region, "--head-ip", r.head.address, "--worker-ips", r.worker.address,
          "--ssh-user", lay["ssh"]["user"], "--ssh-key", lay["ssh"]["private_key"], "-o", str(out)], 60)
    return out


def up(region: str, timeout: float = 300) -> list[dict]:
    """`ray up` the region, then wait until both its nodes are alive; returns them with their labels."""
    _run([str(BIN / "ray"), "up", "-y", "--no-config-cache", str(write_ray_up(region))], timeout)
    want = {h.address for h in layout.region(region).hosts}
    deadline = time.monotonic() + timeout
    while True:
        try:
            alive = nodes(region)
        except Exception:  # the dashboard starts a moment after `ray up` returns
            alive = []
        if {n["ip"] for n in alive} >= want:
            return alive
        if time.monotonic() > deadline:
            raise ServiceError(f"region {region}: nodes {sorted(want)} not all alive after {timeout:.0f} s: {alive}")
        time.sleep(2)


def down(region: str, timeout: float = 180) -> None:
    """`ray down`, then `ray stop` on the workers: with the local provider `ray down` stops Ray on the
    head only (Ray issue 62058: the state file it reads lists no worker as running)."""
    if ray_up_file(region).exists():
        _run([str(BIN / "ray"), "down", "-y", str(ray_up_file(region))], timeout)
    ssh = described()["ssh"]["config"]
    for worker in [layout.region(region).worker]:
        _run(["ssh", "-F", ssh, "-o", "BatchMode=yes", worker.name, f"{BIN / 'ray'} stop"], timeout)


def nodes(region: str) -> list[dict]:
    """The cluster's alive nodes and their labels (Ray's own ray.io/ ones left out), from its dashboard."""
    from ray.util.state import list_nodes

    return [{"ip": n.node_ip, "labels": {k: v for k, v in (n.labels or {}).items() if not k.startswith("ray.io/")}}
            for n in list_nodes(address=dashboard(region)) if n.state == "ALIVE"]


def submit(region: str, submission_id: str, argv: list[str]) -> str:
    """`ray job submit --no-wait` of `argv` (run on the head, from this checkout) to the region's cluster."""
    _run([str(BIN / "ray"), "job", "submit", "--address", dashboard(region), "--submission-id", submission_id,
          "--no-wait", "--", *argv], 120)
    return submission_id


def jobs(region: str):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(dashboard(region))


def wait_job(region: str, job_id: str, timeout: float) -> str:
    """The job's final status; stopped (and its logs raised) when it runs past `timeout`."""
    client = jobs(region)
    deadline = time.monotonic() + timeout
    while (status := str(client.get_job_status(job_id))) not in DONE:
        if time.monotonic() > deadline:
            client.stop_job(job_id)
            raise ServiceError(f"job {job_id} still {status} after {timeout:.0f} s:\n"
                               f"{client.get_job_logs(job_id)[-3000:]}")
        time.sleep(1)
    return status
