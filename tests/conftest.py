"""Shared fixtures: the real local Kafka broker and Weaviate server.

Each fixture uses the service when it already runs (as under `make test`) and
otherwise starts it, stopping only what it started. A skipped `make setup`
fails the test with the name of the missing jar folder or binary.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager

from freshvec.cluster import ray_env

# Before Ray or transformers are imported anywhere: the settings `freshvec run` starts Ray with.
ray_env.apply_local()
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

import pytest

from freshvec.core.errors import SetupError
from freshvec.deploy.local import stack
from freshvec.deploy.local.process import port_open


def _service(service, port: int):
    started = False
    if not port_open(port):
        try:
            service.start()
        except SetupError as exc:
            pytest.fail(str(exc))
        started = True
    yield service
    if started:
        service.stop()


@pytest.fixture(scope="session")
def kafka():
    broker = stack.default_kafka()
    yield from _service(broker, broker.port)


@pytest.fixture(scope="session")
def weaviate_server():
    server = stack.default_weaviate()
    yield from _service(server, server.http_port)


@pytest.fixture
def ray_temp_dir():
    """A short temp dir for Ray: its socket paths must fit in 107 bytes."""
    path = tempfile.mkdtemp(prefix="fvray-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


class SharedRay:
    """One local Ray, and the Serve app on it, kept from module to module while they ask for the same:
    starting both costs about 40 s a module on 2 cores. A module that needs a Ray of its own (a
    labelled cluster, metrics settings) or none at all takes it over with `own()` or `release()`."""

    def __init__(self):
        self.temp_dir: str | None = None
        self.owned = False  # a module's own Ray is up, not the shared one
        self.serve_cfg = None  # the config of the Serve app deployed on the Ray that is up
        self.info = None

    def ray(self) -> None:
        import ray

        if self.owned:
            raise RuntimeError("a module's own Ray is up; the shared one cannot start beside it")
        if not ray.is_initialized():
            self.temp_dir = tempfile.mkdtemp(prefix="fvray-", dir="/tmp")  # Ray's socket paths must fit 107 bytes
            ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2,
                     _temp_dir=self.temp_dir, namespace="freshvec-tests")

    def serve(self, cfg):
        """The ModelInfo of the Serve app for `cfg` on the Ray that is up, deployed when another runs."""
        from ray import serve

        from freshvec.cluster.pipeline import deploy_serve

        if self.serve_cfg != cfg:
            if self.serve_cfg is not None:
                serve.shutdown()
            self.serve_cfg, self.info = None, None
            self.info = deploy_serve(cfg)
            self.serve_cfg = cfg
        return self.info

    def invalidate(self) -> None:
        """A test replaced the app: deploy it again on the next ask."""
        self.serve_cfg = object()

    def release(self) -> None:
        """Serve and Ray down, and Serve's client forgotten (it would outlive its cluster otherwise)."""
        import ray
        from ray import serve

        if ray.is_initialized():
            try:
                serve.shutdown()
            finally:
                ray.shutdown()
        if self.temp_dir:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
        self.temp_dir, self.owned, self.serve_cfg, self.info = None, False, None, None

    @contextmanager
    def own(self, start):
        """Run a module on the Ray that `start()` brings up; down again afterwards."""
        self.release()
        start()
        self.owned = True
        try:
            yield
        finally:
            self.release()


@pytest.fixture(scope="session")
def shared_ray():
    shared = SharedRay()
    yield shared
    shared.release()
