"""Node-level scaling: embedding replicas that do not fit make Ray's autoscaler launch nodes of the
`ray up` YAML's node types, in the right region; nodes left idle by a scale-down are removed.

The cluster is Ray's fake multi-node provider under autoscaler v2: every "node" is a raylet on this
machine, launched and removed by the real autoscaler from `freshvec cluster-yaml`'s node types (only
the provider and the minimum counts are changed). Each replica asks for 12 of an embed-cpu node's 16
CPUs, so two replicas need two nodes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.integration.conftest import wait_until

pytestmark = pytest.mark.timeout(600)

GCS_PORT = 26391
DASHBOARD_PORT = 28291
HTTP_PORT = 18200


def _autoscaling_config(tmp_path: Path) -> Path:
    from ray.autoscaler._private.fake_multi_node.node_provider import FAKE_HEAD_NODE_ID

    from freshvec.cluster.rayup import cluster_yaml
    from freshvec.core.config import parse_config

    cfg = parse_config({"regions": {"us": {"bootstrap_servers": ["127.0.0.1:9092"]}}})
    config = cluster_yaml(cfg, "us", "aws")
    config["provider"] = {
        "type": "external", "module": "ray.autoscaler._private.fake_multi_node.node_provider.FakeMultiNodeProvider",
        "use_node_id_as_ip": True, "disable_node_updaters": True, "disable_launch_config_check": True,
        "gcs_address": f"127.0.0.1:{GCS_PORT}", "launch_multiple": True, "head_node_id": FAKE_HEAD_NODE_ID,
    }
    for node_type in config["available_node_types"].values():
        node_type["node_config"] = {}
        if "min_workers" in node_type:
            node_type["min_workers"] = 0  # nodes only on demand
    config.update(idle_timeout_minutes=0.1, max_workers=4, auth={}, docker={}, file_mounts={},
                  cluster_synced_files=[], file_mounts_sync_continuously=False, rsync_exclude=[], rsync_filter=[],
                  initialization_commands=[], setup_commands=[], head_setup_commands=[], worker_setup_commands=[],
                  head_start_ray_commands=[], worker_start_ray_commands=[])
    path = tmp_path / "autoscaling.json"
    path.write_text(json.dumps(config))
    return path


def _ours(process: psutil.Process) -> bool:
    try:
        return any(str(GCS_PORT) in part for part in process.cmdline())
    except psutil.Error:
        return False


def _stop_cluster() -> None:
    """Every process of this cluster names its GCS port; nothing else on the machine is touched."""
    procs = [p for p in psutil.process_iter() if _ours(p)]
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=20)


@pytest.fixture
def fake_cluster(tmp_path, shared_ray):
    import shutil
    import tempfile

    shared_ray.release()  # this test's driver joins the fake cluster instead
    from ray.autoscaler._private.fake_multi_node.node_provider import FAKE_HEAD_NODE_ID

    config = _autoscaling_config(tmp_path)
    temp_dir = Path(tempfile.mkdtemp(prefix="fvfake-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    # Serve's plain mode: fake nodes share one host, where a proxy per node would contend for one port.
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_SERVE_")}, "RAY_FAKE_CLUSTER": "1", "RAY_enable_autoscaler_v2": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1",
           "RAY_CLOUD_INSTANCE_ID": FAKE_HEAD_NODE_ID, "RAY_OVERRIDE_NODE_ID_FOR_TESTING": FAKE_HEAD_NODE_ID}
    ray_bin = str(Path(sys.executable).with_name("ray"))
    subprocess.run([ray_bin, "start", "--head", f"--autoscaling-config={config}", "--num-cpus=0",
                    f"--port={GCS_PORT}", f"--dashboard-port={DASHBOARD_PORT}", "--dashboard-host=127.0.0.1",
                    f"--temp-dir={temp_dir}"],
                   env=env, check=True, capture_output=True, timeout=120)
    try:
        yield f"127.0.0.1:{GCS_PORT}"
    finally:
        import ray
        from ray import serve

        try:
            serve.shutdown()  # also forgets Serve's client, which would otherwise outlive this cluster
        finally:
            ray.shutdown()
            _stop_cluster()
        for folder in (temp_dir, Path("/tmp/ray")):  # `ray start` notes the cluster for address="auto"
            marker = folder / "ray_current_cluster"
            if marker.exists() and str(GCS_PORT) in marker.read_text():
                marker.unlink()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _nodes(role: str) -> list[dict]:
    import ray

    return [n for n in ray.nodes() if n["Alive"] and n.get("Labels", {}).get("role") == role]


def _replica_nodes() -> list[str]:
    from ray.util.state import list_actors

    from freshvec.core.identity import APP_NAME, DEPLOYMENT_NAME

    return [a.node_id for a in list_actors(address=f"http://127.0.0.1:{DASHBOARD_PORT}", filters=[
        ("class_name", "=", f"ServeReplica:{APP_NAME}:{DEPLOYMENT_NAME}"), ("state", "=", "ALIVE")])]


def _deploy(replicas: int) -> None:
    from ray import serve

    from freshvec.cluster.pipeline import deploy_serve
    from freshvec.core.config import parse_config

    serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": HTTP_PORT})

    deploy_serve(parse_config({
        "http": {"port": HTTP_PORT},
        "embedding": {"num_cpus": 12, "threads": 1, "label_selector": {"region": "us"},
                      "autoscaling": {"min_replicas": replicas, "max_replicas": replicas}},
    }))


def test_replicas_that_do_not_fit_launch_region_nodes_and_idle_nodes_go(fake_cluster):
    import ray

    ray.init(address=fake_cluster, namespace="freshvec-tests")
    assert _nodes("embed-cpu") == []  # the head has no CPUs: nothing runs until nodes come
    _deploy(2)  # waits until both replicas answer, on nodes the autoscaler launched for them
    placed = _replica_nodes()
    embed_nodes = {n["NodeID"]: n["Labels"] for n in _nodes("embed-cpu")}
    assert len(placed) == 2 and set(placed) <= set(embed_nodes) and len(set(placed)) == 2, (placed, embed_nodes)
    assert all(embed_nodes[n]["region"] == "us" for n in placed)

    _deploy(1)
    wait_until(lambda: len(_replica_nodes()) == 1, 120, "one replica after the scale-down")
    wait_until(lambda: len(_nodes("embed-cpu")) == 1, 180, "the idle embed-cpu node removed", interval=2)
    assert _replica_nodes()[0] in {n["NodeID"] for n in _nodes("embed-cpu")}
    time.sleep(1)
