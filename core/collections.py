"""The collection behind `weaviate.collection`: an alias to a versioned physical collection.

The configured name is a Weaviate alias; the objects live in `<name>_v<n>`, whose description records
the model and its dimension. Writers and readers address the alias, so changing the model (a new
collection `<name>_v<n+1>` filled beside the live one) ends with one atomic step: Weaviate moves one
alias in a single schema transaction. Object calls accept the alias; schema calls need the physical name.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from freshvec.core.errors import CollectionMismatchError, LegacyCollectionError, SinkError
from freshvec.core.generation import physical_name
from freshvec.core.identity import ModelInfo
from freshvec.core.store import weaviate_errors

MIGRATE_BATCH = 500  # objects per insert when a plain collection is copied under an alias


@dataclass(frozen=True)
class Stored:
    """What a physical collection says it holds (its description), None where it does not say."""

    collection: str
    model: str | None
    dim: int | None


def target(client, alias: str) -> str | None:
    """The physical collection `alias` points at; None when there is no such alias."""
    found = client.alias.get(alias_name=alias)
    return found.collection if found is not None else None


def stored(client, collection: str) -> Stored:
    try:
        marker = json.loads(client.collections.use(collection).config.get().description or "")
    except json.JSONDecodeError:
        marker = None
    if not isinstance(marker, dict):
        return Stored(collection, None, None)
    return Stored(collection, marker.get("freshvec_model"), marker.get("dim"))


def ensure_collection(client, name: str, model: ModelInfo) -> str:
    """The physical collection behind alias `name`, made on a first start (`<name>_v1` and the alias);
    refuses one that holds another model's vectors, and a plain collection of that name (a freshvec
    before aliases), naming the command that migrates it. Gives an older collection the chunk properties."""
    with weaviate_errors("collection check"):
        physical = target(client, name)
        if physical is None:
            if client.collections.exists(name):
                raise LegacyCollectionError(
                    f"collection {name} is a plain collection (made by a freshvec before aliases); run "
                    f"`freshvec migrate-collection` once to move it to {physical_name(name, 1)} under an alias {name}")
            physical = physical_name(name, 1)
            _create_or_check(client, physical, model, name)
            physical = _create_alias(client, name, physical)
        _create_or_check(client, physical, model, name)  # also an alias whose collection was deleted
        return physical


def _create_alias(client, alias: str, physical: str) -> str:
    """Point a new alias at `physical`; when another process made it first, its target."""
    from weaviate.exceptions import UnexpectedStatusCodeError

    try:
        client.alias.create(alias_name=alias, target_collection=physical)
        return physical
    except UnexpectedStatusCodeError:
        if (made := target(client, alias)) is None:
            raise
        return made


def _create_or_check(client, physical: str, model: ModelInfo, alias: str) -> None:
    if not client.collections.exists(physical):
        create(client, physical, model)
        return
    collection = client.collections.use(physical)
    _check(client, physical, model, f"{physical} (alias {alias})")
    have = {p.name for p in collection.config.get().properties}
    for prop in _chunk_properties():
        if prop.name not in have:
            collection.config.add_property(prop)


def create(client, physical: str, model: ModelInfo) -> None:
    """A physical collection for `model`'s vectors, the model recorded in its description."""
    from weaviate.classes.config import Configure, DataType, Property, Tokenization
    from weaviate.exceptions import UnexpectedStatusCodeError

    marker = json.dumps({"freshvec_model": model.model, "dim": model.dim}, sort_keys=True)
    try:
        client.collections.create(
            physical,
            description=marker,
            vector_config=Configure.Vectors.self_provided(),  # freshvec brings every vector
            properties=[
                Property(name="doc_id", data_type=DataType.TEXT, tokenization=Tokenization.FIELD),
                *_chunk_properties(),
                Property(name="metadata", data_type=DataType.TEXT, index_searchable=False, index_filterable=False),
                Property(name="metadata_terms", data_type=DataType.TEXT_ARRAY, tokenization=Tokenization.FIELD),
                Property(name="source_topic", data_type=DataType.TEXT, tokenization=Tokenization.FIELD),
                Property(name="source_partition", data_type=DataType.INT),
                Property(name="source_offset", data_type=DataType.INT),
                Property(name="event_ts_ms", data_type=DataType.INT),
                Property(name="ingest_ts_ms", data_type=DataType.INT),
                Property(name="model", data_type=DataType.TEXT, tokenization=Tokenization.FIELD),
            ],
        )
    except UnexpectedStatusCodeError:
        if not client.collections.exists(physical):  # not a race with another process: a real refusal
            raise
        _check(client, physical, model, physical)


def _chunk_properties() -> list:
    from weaviate.classes.config import DataType, Property

    return [
        Property(name="text", data_type=DataType.TEXT),  # the chunk's text, searchable by BM25 (hybrid)
        Property(name="chunk_index", data_type=DataType.INT, index_range_filters=True),
        Property(name="chunk_count", data_type=DataType.INT),
        Property(name="char_start", data_type=DataType.INT),
        Property(name="char_end", data_type=DataType.INT),
    ]


def _check(client, physical: str, info: ModelInfo, label: str) -> None:
    """Refuse a collection that holds another model's vectors; `label` names it in the message."""
    model, dim = info.model, info.dim
    says = stored(client, physical)
    if says.model is not None and (says.model, says.dim) != (model, dim):
        raise CollectionMismatchError(
            f"collection {label} holds vectors of model {says.model!r} ({says.dim} dims), not {model!r} "
            f"({dim} dims); use another weaviate.collection or delete it")
    # Also look at what is stored, for collections that someone else created.
    sample = client.collections.use(physical).query.fetch_objects(limit=1, include_vector=True,
                                                                 return_properties=["model"])
    for obj in sample.objects:
        vector = obj.vector.get("default") if isinstance(obj.vector, dict) else obj.vector
        found_model = obj.properties.get("model")
        if (vector is not None and len(vector) != dim) or (found_model not in (None, model)):
            raise CollectionMismatchError(
                f"collection {label} holds vectors of model {found_model!r} "
                f"({len(vector) if vector is not None else '?'} dims), not {model!r} ({dim} dims); "
                "use another weaviate.collection or delete it")


def drop(client, name: str) -> None:
    """Delete alias `name` and the collection it points at, or a plain collection of that name."""
    with weaviate_errors("collection delete"):
        physical = target(client, name)
        if physical is not None:
            client.alias.delete(alias_name=name)
            client.collections.delete(physical)
        client.collections.delete(name)  # a plain one; no error when absent


def count(client, name: str) -> int:
    return client.collections.use(name).aggregate.over_all(total_count=True).total_count


def migrate(client, name: str, model: str,
            progress: Callable[[int, int], None] = lambda done, total: None) -> str | None:
    """Move plain collection `name` under an alias of that name: copy every object with its vector and
    id into `<name>_v1`, check the count, delete the plain collection, create the alias. Safe to run
    again after a crash at any step (the copy overwrites by id). `model`: recorded when the plain
    collection does not say which model it holds. Returns the physical collection; None when the plain
    collection was empty and is only deleted (the next start makes the alias)."""
    from weaviate.classes.data import DataObject

    physical = physical_name(name, 1)
    with weaviate_errors("migration"):
        if (already := target(client, name)) is not None:
            return already
        if client.collections.exists(name):
            says = stored(client, name)
            old = client.collections.use(name)
            total, done, batch = count(client, name), 0, []
            for obj in old.iterator(include_vector=True):
                vector = obj.vector.get("default") if isinstance(obj.vector, dict) else obj.vector
                if not client.collections.exists(physical):  # the first object tells the dimension
                    create(client, physical, ModelInfo(says.model or model, says.dim or len(vector)))
                batch.append(DataObject(properties=obj.properties, uuid=obj.uuid, vector=vector))
                if len(batch) >= MIGRATE_BATCH:
                    done += _copy(client, physical, batch)
                    progress(done, total)
            done += _copy(client, physical, batch)
            progress(done, total)
            if not client.collections.exists(physical):  # empty: nothing to keep
                client.collections.delete(name)
                return None
            if total and count(client, physical) < total:
                raise SinkError(f"migration copied {count(client, physical)} of {total} objects of {name}; "
                                "run it again")
            client.collections.delete(name)
        elif not client.collections.exists(physical):
            raise LegacyCollectionError(f"nothing to migrate: no collection or alias named {name}")
        client.alias.create(alias_name=name, target_collection=physical)
    return physical


def _copy(client, physical: str, batch: list) -> int:
    if not batch:
        return 0
    result = client.collections.use(physical).data.insert_many(batch)
    if result.errors:
        first = next(iter(result.errors.values()))
        raise SinkError(f"weaviate refused {len(result.errors)} of {len(batch)} objects copied into {physical}: "
                        f"{first.message}")
    copied = len(batch)
    batch.clear()
    return copied
