"""Check a Serve config file (`serve deploy` YAML) strictly before Ray sees it.

Ray's own schema silently ignores keys it does not know, including removed ones
(`max_concurrent_queries`) and typos (`num_gpu`), and accepts an autoscaling
config with min_replicas > max_replicas. This loader rejects all of them with
the dotted path of the key, then validates with Ray's schema.

    python -m freshvec.serve.deploy_config deploy/serve/freshvec.yaml
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path
from typing import Any

import yaml

from freshvec.core.errors import ConfigError

# Keys Ray removed or renamed, with what to write instead.
RENAMED = {
    "max_concurrent_queries": "max_ongoing_requests",
    "target_num_ongoing_requests_per_replica": "target_ongoing_requests",
    "route_prefix (on a deployment)": "route_prefix on the application",
}


def _fields(schema) -> set[str]:
    return set(schema.model_fields)


def _check_keys(data: Any, allowed: set[str], where: str) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: must be a mapping, got {type(data).__name__}")
    for key in data:
        if key in allowed:
            continue
        hint = RENAMED.get(key) or next(iter(difflib.get_close_matches(key, allowed, n=1)), None)
        suffix = f"; did you mean {hint!r}?" if hint else ""
        raise ConfigError(f"{where}.{key}: unknown key (Ray would silently ignore it){suffix}")


def check_serve_config(data: dict) -> Any:
    """Validate a parsed Serve config; returns Ray's ServeDeploySchema for it."""
    from pydantic import ValidationError
    from ray.serve.config import AutoscalingConfig
    from ray.serve.schema import (
        DeploymentSchema,
        HTTPOptionsSchema,
        RayActorOptionsSchema,
        ServeApplicationSchema,
        ServeDeploySchema,
    )

    _check_keys(data, _fields(ServeDeploySchema), "(top level)")
    if "http_options" in data:
        _check_keys(data["http_options"], _fields(HTTPOptionsSchema), "http_options")
    for i, app in enumerate(data.get("applications") or []):
        where = f"applications[{i}]"
        _check_keys(app, _fields(ServeApplicationSchema), where)
        for j, dep in enumerate(app.get("deployments") or []):
            dwhere = f"{where}.deployments[{j}]"
            _check_keys(dep, _fields(DeploymentSchema), dwhere)
            if "ray_actor_options" in dep:
                _check_keys(dep["ray_actor_options"], _fields(RayActorOptionsSchema), f"{dwhere}.ray_actor_options")
            if "autoscaling_config" in dep:
                _check_keys(dep["autoscaling_config"], _fields(AutoscalingConfig), f"{dwhere}.autoscaling_config")
                try:
                    AutoscalingConfig(**dep["autoscaling_config"])
                except (ValidationError, ValueError) as exc:
                    raise ConfigError(f"{dwhere}.autoscaling_config: {exc}") from None
        args = app.get("args") or {}
        if "config" in args:  # our builder's freshvec config: validate it too
            from freshvec.core.config import load_config

            load_config(args["config"])
    try:
        return ServeDeploySchema.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"serve config: {exc}") from None


def load_serve_config(path: str | Path) -> Any:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (FileNotFoundError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    try:
        return check_serve_config(data or {})
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def main() -> None:
    for path in sys.argv[1:]:
        try:
            load_serve_config(path)
        except ConfigError as exc:
            sys.exit(f"error: {exc}")
        print(f"{path}: ok")


if __name__ == "__main__":
    main()
