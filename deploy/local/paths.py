"""Where the local stack's cached builds and run-time state live.

Caches (Kafka jars, the weaviate-server binary) are shared by every clone under
``$FRESHVEC_CACHE``; run-time state (data dirs, logs, pid files) belongs to one
clone, under ``$FRESHVEC_STATE`` or ``<repo>/.run``.
"""

from __future__ import annotations

import os
from pathlib import Path

from freshvec.core.errors import SetupError

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCAL_DIR = Path(__file__).resolve().parent


def versions() -> dict[str, str]:
    """Read deploy/local/versions.env, the one place the versions are written."""
    out = {}
    for line in (LOCAL_DIR / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def cache_dir() -> Path:
    return Path(os.environ.get("FRESHVEC_CACHE", Path.home() / ".cache" / "freshvec"))


def state_dir() -> Path:
    return Path(os.environ.get("FRESHVEC_STATE", REPO_ROOT / ".run"))


def kafka_libs() -> Path:
    libs = cache_dir() / "kafka" / versions()["KAFKA_VERSION"] / "libs"
    if not (libs / ".complete").exists():
        raise SetupError(f"Kafka jars not found in {libs}: run `make setup` first")
    return libs


def weaviate_binary() -> Path:
    binary = cache_dir() / "weaviate" / versions()["WEAVIATE_VERSION"] / "weaviate-server"
    if not binary.exists():
        raise SetupError(f"weaviate-server binary not found at {binary}: run `make setup` first")
    return binary
