"""The index generation: which model the live pipeline embeds with, through which Serve application,
into which physical collection.

`freshvec run` publishes it in Ray's key-value store when it starts; `freshvec reindex` publishes the
next one at its switch. A consumer takes the published one when Ray restarts it (its constructor's
arguments are those of its first start), and /search looks up which application embeds with the model
of the collection a query reads. Writers address the physical collection of their generation, never
the alias, so a consumer of the old generation can never write into the new collection.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from freshvec.core.identity import APP_NAME, KV_NAMESPACE, ModelInfo

GENERATION_PREFIX = "index:generation:"  # + the alias: one index, one generation


@dataclass(frozen=True)
class Generation:
    version: int  # the collection's: `<alias>_v<version>`
    model: ModelInfo
    app: str = APP_NAME  # the Serve application that embeds with `model`

    def collection(self, alias: str) -> str:
        return physical_name(alias, self.version)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Generation:
        data = json.loads(text)
        return cls(int(data["version"]), ModelInfo(**data["model"]), data["app"])


def physical_name(alias: str, version: int) -> str:
    return f"{alias}_v{version}"


def version_of(alias: str, physical: str) -> int | None:
    """n for `<alias>_v<n>`; None for a collection named otherwise."""
    prefix = f"{alias}_v"
    tail = physical[len(prefix):] if physical.startswith(prefix) else ""
    return int(tail) if tail.isdigit() else None


def current(alias: str) -> Generation | None:
    """The generation published for index `alias`; None before `freshvec run` published one (or without Ray)."""
    from ray.experimental.internal_kv import _internal_kv_get, _internal_kv_initialized

    if not _internal_kv_initialized():
        return None
    raw = _internal_kv_get(GENERATION_PREFIX + alias, namespace=KV_NAMESPACE)
    return Generation.from_json(raw) if raw else None


def publish(alias: str, generation: Generation) -> None:
    from ray.experimental.internal_kv import _internal_kv_put

    _internal_kv_put(GENERATION_PREFIX + alias, generation.to_json(), overwrite=True, namespace=KV_NAMESPACE)
