"""The strict Serve config loader: the shipped YAML passes; what Ray would silently ignore fails."""

from __future__ import annotations

import copy

import pytest
import yaml

from freshvec.core.errors import ConfigError
from freshvec.serve.deploy_config import check_serve_config, load_serve_config

SHIPPED = "deploy/serve/freshvec.yaml"


def shipped() -> dict:
    return yaml.safe_load(open(SHIPPED))


def test_shipped_config_passes_and_names_our_builder():
    schema = load_serve_config(SHIPPED)
    app = schema.applications[0]
    assert app.import_path == "freshvec.serve.app:app_builder" and app.deployments[0].name == "Embedder"


def test_builder_in_the_import_path_builds_the_app():
    from ray.serve import Application

    from freshvec.serve.app import app_builder

    assert isinstance(app_builder(shipped()["applications"][0]["args"]), Application)


def _mutate(path: list, key: str, value) -> dict:
    data = copy.deepcopy(shipped())
    node = data
    for step in path:
        node = node[step]
    node[key] = value
    return data


@pytest.mark.parametrize("path, key, value, message", [
    (["applications", 0, "deployments", 0], "max_concurrent_queries", 10,
     "applications[0].deployments[0].max_concurrent_queries: unknown key (Ray would silently ignore it); "
     "did you mean 'max_ongoing_requests'?"),
    (["applications", 0, "deployments", 0, "ray_actor_options"], "num_gpu", 1,
     "ray_actor_options.num_gpu: unknown key (Ray would silently ignore it); did you mean 'num_gpus'?"),
    (["applications", 0, "deployments", 0, "autoscaling_config"], "target_num_ongoing_requests_per_replica", 2,
     "did you mean 'target_ongoing_requests'?"),
    (["applications", 0, "deployments", 0, "autoscaling_config"], "min_replicas", 5,
     "applications[0].deployments[0].autoscaling_config:"),
    ([], "proxy_locaton", "HeadOnly", "(top level).proxy_locaton: unknown key"),
    (["applications", 0], "args", {"config": "missing.yaml"}, "missing.yaml not found"),
])
def test_keys_ray_would_ignore_are_rejected(path, key, value, message):
    with pytest.raises(ConfigError) as err:
        check_serve_config(_mutate(path, key, value))
    assert message in str(err.value)

