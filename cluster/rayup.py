"""`freshvec cluster-yaml`: a complete `ray up` config for one region, from the freshvec config.

AWS and GCP providers launch a cluster in one cloud region, so each freshvec
region is its own Ray cluster (its own head), next to its own brokers. Every
worker node type carries the region's node label (sent by `ray up` to
`ray start` as RAY_OVERRIDE_LABELS), which is what the consumers' label selectors
match; GPU nodes get the label too, for region-pinned embedding replicas.
"""

from __future__ import annotations

from typing import Any

from freshvec.cluster import ray_env
from freshvec.core.config import FreshvecConfig
from freshvec.core.errors import ConfigError

RAY_VERSION = "2.60.0"

# Instance shapes per provider: head (control plane only), consumers (I/O), embedding on CPU and GPU.
SHAPES = {
    "aws": {
        "head": {"InstanceType": "m6i.large"},
        "consumer": {"InstanceType": "m6i.large"},
        "embed-cpu": {"InstanceType": "c6i.4xlarge"},
        "embed-gpu": {"InstanceType": "g5.xlarge"},
    },
    "gcp": {
        "head": {"machineType": "n2-standard-2"},
        "consumer": {"machineType": "n2-standard-2"},
        "embed-cpu": {"machineType": "c2-standard-16"},
        "embed-gpu": {"machineType": "g2-standard-4",
                      "guestAccelerators": [{"acceleratorType": "nvidia-l4", "acceleratorCount": 1}],
                      "scheduling": [{"onHostMaintenance": "TERMINATE"}]},
    },
}
RESOURCES = {"head": {"CPU": 0}, "consumer": {"CPU": 2}, "embed-cpu": {"CPU": 16}, "embed-gpu": {"CPU": 4, "GPU": 1}}
GCP_IMAGE = {"initializeParams": {"diskSizeGb": 100,
                                  "sourceImage": "projects/deeplearning-platform-release/global/images/family/common-cu124"},
             "boot": True, "autoDelete": True, "type": "PERSISTENT"}


def _node_config(provider: str, kind: str) -> dict:
    config = dict(SHAPES[provider][kind])
    if provider == "aws":
        config["BlockDeviceMappings"] = [{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 100, "VolumeType": "gp3"}}]
    else:
        config["disks"] = [GCP_IMAGE]
    return config


def cluster_yaml(cfg: FreshvecConfig, region: str, provider: str, cloud_region: str | None = None,
                 project_id: str = "my-gcp-project") -> dict[str, Any]:
    """The `ray up` config of one region. `cloud_region` defaults to the region's name."""
    if region not in cfg.regions:
        raise ConfigError(f"region {region!r} is not in the config's regions: {sorted(cfg.regions)}")
    if provider not in SHAPES:
        raise ConfigError(f"provider must be one of {sorted(SHAPES)}, got {provider!r}")
    rc = cfg.regions[region]
    labels = {rc.label_key: rc.label_value or region}
    cloud_region = cloud_region or region
    if provider == "aws":
        provider_cfg = {"type": "aws", "region": cloud_region, "cache_stopped_nodes": False}
    else:
        provider_cfg = {"type": "gcp", "region": cloud_region, "availability_zone": f"{cloud_region}-a",
                        "project_id": project_id}

    def node_type(kind: str, min_workers: int, max_workers: int) -> dict:
        return {"resources": RESOURCES[kind], "node_config": _node_config(provider, kind),
                "min_workers": min_workers, "max_workers": max_workers, "labels": {**labels, "role": kind}}

    label_flag = ",".join(f"{k}={v}" for k, v in labels.items())
    return {
        "cluster_name": f"freshvec-{region}",
        "max_workers": 20,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 10,
        "provider": provider_cfg,
        "auth": {"ssh_user": "ubuntu"},
        "available_node_types": {
            "ray.head.default": {"resources": RESOURCES["head"], "node_config": _node_config(provider, "head")},
            "consumer": node_type("consumer", 1, 4),
            "embed-cpu": node_type("embed-cpu", 1, 8),
            "embed-gpu": node_type("embed-gpu", 0, 4),
        },
        "head_node_type": "ray.head.default",
        # The project is copied to every node and installed there with its pinned dependencies.
        "file_mounts": {"~/freshvec": "."},
        "rsync_exclude": [".venv", ".run", "bench/results", "**/__pycache__"],
        "setup_commands": [
            "python3 -m pip install -q --upgrade pip",
            "cd ~/freshvec && python3 -m pip install -q -r requirements.lock && python3 -m pip install -q --no-deps -e .",
        ],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [
            "ray stop",
            f"ulimit -n 65536; RAY_enable_autoscaler_v2=1 {ray_env.shell_prefix()} ray start --head --port=6379 "
            "--object-manager-port=8076 --autoscaling-config=~/ray_bootstrap_config.yaml --dashboard-host=0.0.0.0 "
            f"--labels={label_flag}",
        ],
        "worker_start_ray_commands": [
            "ray stop",
            f"ulimit -n 65536; {ray_env.shell_prefix()} ray start --address=$RAY_HEAD_IP:6379 "
            "--object-manager-port=8076",
        ],
    }


def local_cluster_yaml(cfg: FreshvecConfig, region: str, head_ip: str, worker_ips: list[str],
                       ssh_user: str = "root", ssh_private_key: str = "~/.ssh/id_ed25519",
                       project_dir: str = "~/freshvec", num_cpus: int = 1, object_store_mb: int = 200) -> dict[str, Any]:
    """The `ray up` config of one region on machines you already have (`provider.type: local`).

    The local provider launches nothing: it reaches `head_ip` and `worker_ips` over SSH and runs the
    start commands there, with freshvec set up in `project_dir` (`make setup`) on each. It does not
    pass node-type labels to `ray start` (Ray's note: skipped for this provider), so the region label
    is on each start command, where the consumers' label selectors find it.
    """
    if region not in cfg.regions:
        raise ConfigError(f"region {region!r} is not in the config's regions: {sorted(cfg.regions)}")
    rc = cfg.regions[region]
    label = f"{rc.label_key}={rc.label_value or region}"
    ray = f"{project_dir}/.venv/bin/ray"
    path_line = f'export PATH="{project_dir}/.venv/bin:$PATH"'
    # Token auth off: the cluster's nodes are reached on a private network (Ray's local-cluster default).
    env = f"RAY_AUTH_MODE=disabled {ray_env.shell_prefix()}"
    flags = f"--num-cpus={num_cpus} --object-store-memory={object_store_mb * 1024 * 1024} --labels={label}"
    return {
        "cluster_name": f"freshvec-{region}",
        "provider": {"type": "local", "head_ip": head_ip, "worker_ips": list(worker_ips)},
        "auth": {"ssh_user": ssh_user, "ssh_private_key": ssh_private_key},
        "min_workers": len(worker_ips),
        "max_workers": len(worker_ips),
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 5,
        "file_mounts": {},
        # `ray down` runs a bare `ray stop` on each machine: the project's venv goes on the login PATH.
        "setup_commands": [f"grep -qxF '{path_line}' ~/.bashrc || echo '{path_line}' >> ~/.bashrc"],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        # Autoscaler v1 on the head: v2 (ray up's default) never launches this provider's workers (Ray
        # 2.60: it adds a node every 5 s and none starts); v1 starts them over SSH from the head.
        "head_start_ray_commands": [
            f"{ray} stop",
            f"ulimit -n 65536; RAY_enable_autoscaler_v2=0 {env} {ray} start {flags} --head --port=6379 "
            "--autoscaling-config=~/ray_bootstrap_config.yaml --dashboard-host=0.0.0.0",
        ],
        "worker_start_ray_commands": [
            f"{ray} stop",
            f"ulimit -n 65536; {env} {ray} start {flags} --address=$RAY_HEAD_IP:6379",
        ],
    }


def validate(config: dict) -> None:
    """Ray's own offline check: its schema, the provider's defaults merged, no credentials needed."""
    import copy

    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(config)))
