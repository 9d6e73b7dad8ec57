"""`ray up` configs: every generated example passes Ray's own offline validator; labels are set."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from freshvec.core.config import load_config
from freshvec.cluster.rayup import cluster_yaml, validate

EXAMPLES = sorted(Path("deploy/ray-up").glob("*.yaml"))


def test_there_are_examples_for_two_regions_on_each_provider():
    names = {p.stem for p in EXAMPLES}
    assert {"aws-us-east-1", "aws-europe-west1", "gcp-us-east-1", "gcp-europe-west1"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_passes_rays_validator_and_labels_its_region(path):
    config = yaml.safe_load(path.read_text())
    validate(config)
    region = path.stem.split("-", 1)[1]
    workers = {k: v for k, v in config["available_node_types"].items() if k != "ray.head.default"}
    assert {"consumer", "embed-cpu", "embed-gpu"} <= set(workers)
    assert all(t["labels"]["region"] == region for t in workers.values())
    assert workers["embed-gpu"]["resources"]["GPU"] == 1
    assert any("pip install" in c and "requirements.lock" in c for c in config["setup_commands"])
    assert any(f"--labels=region={region}" in c for c in config["head_start_ray_commands"])


def test_examples_match_what_the_generator_writes_now():
    cfg = load_config("deploy/regions.example.yaml")
    for path in EXAMPLES:
        provider, region = path.stem.split("-", 1)
        stored = yaml.safe_load(path.read_text())
        regenerated = cluster_yaml(cfg, region, provider, stored["provider"]["region"])
        assert regenerated == stored, f"{path} is stale: regenerate it with freshvec cluster-yaml"


def test_validator_catches_a_broken_config():
    config = yaml.safe_load(EXAMPLES[0].read_text())
    broken = copy.deepcopy(config)
    broken["available_node_types"]["consumer"]["resources"]["CPU"] = 0.5
    with pytest.raises(Exception):
        validate(broken)
    broken = copy.deepcopy(config)
    broken["available_node_types"]["consumer"]["unknown_key"] = 1
    with pytest.raises(Exception):
        validate(broken)


def test_unknown_region_is_refused():
    with pytest.raises(ValueError, match="region 'mars' is not in the config's regions"):
        cluster_yaml(load_config("deploy/regions.example.yaml"), "mars", "aws")


def test_local_provider_config_passes_rays_validator_and_labels_every_start_command():
    from freshvec.cluster.rayup import local_cluster_yaml

    cfg = load_config("deploy/regions.example.yaml")
    region = sorted(cfg.regions)[0]
    config = local_cluster_yaml(cfg, region, "10.0.0.1", ["10.0.0.2", "10.0.0.3"], ssh_private_key="/k/id",
                                project_dir="/srv/freshvec")
    validate(config)
    assert config["provider"] == {"type": "local", "head_ip": "10.0.0.1", "worker_ips": ["10.0.0.2", "10.0.0.3"]}
    assert config["min_workers"] == config["max_workers"] == 2
    for commands in (config["head_start_ray_commands"], config["worker_start_ray_commands"]):
        assert f"--labels=region={region}" in commands[-1] and "/srv/freshvec/.venv/bin/ray start" in commands[-1]
    assert "--address=$RAY_HEAD_IP:6379" in config["worker_start_ray_commands"][-1]
    # The head's autoscaler is v1 (v2 starts no worker of this provider), set where `ray start` sees it.
    head = config["head_start_ray_commands"][-1]
    assert head.index("RAY_enable_autoscaler_v2=0") > head.index(";") and "--head" in head
    # `ray down` runs a bare `ray stop`: the venv is put on the login PATH once.
    assert config["setup_commands"] == [
        "grep -qxF 'export PATH=\"/srv/freshvec/.venv/bin:$PATH\"' ~/.bashrc || "
        "echo 'export PATH=\"/srv/freshvec/.venv/bin:$PATH\"' >> ~/.bashrc"]


def test_cli_writes_a_local_config_and_names_a_missing_head_ip(tmp_path, capsys):
    from freshvec.cluster.cli import main

    out = tmp_path / "local.yaml"
    region = sorted(load_config("deploy/regions.example.yaml").regions)[0]
    main(["cluster-yaml", "-c", "deploy/regions.example.yaml", "--region", region, "--provider", "local",
          "--head-ip", "10.0.0.1", "--worker-ips", "10.0.0.2", "-o", str(out)])
    written = yaml.safe_load(out.read_text())
    validate(written)
    assert written["provider"]["worker_ips"] == ["10.0.0.2"]
    with pytest.raises(SystemExit):
        main(["cluster-yaml", "-c", "deploy/regions.example.yaml", "--region", region, "--provider", "local"])
    assert "--provider local needs --head-ip" in capsys.readouterr().err
