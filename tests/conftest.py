"""Shared fixtures: the real local Kafka broker and Weaviate server.

Each fixture uses the service when it already runs (as under `make test`) and
otherwise starts it, stopping only what it started. A skipped `make setup`
fails the test with the name of the missing jar folder or binary.
"""

from __future__ import annotations

import os
import shutil
import tempfile

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
