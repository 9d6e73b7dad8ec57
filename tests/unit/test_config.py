"""Configuration: defaults, the seed article's latency settings, errors that name the key."""

from __future__ import annotations

import pytest

from freshvec.core.config import ConfigError, load_config, parse_config


def test_defaults_carry_the_latency_settings():
    cfg = parse_config({})
    assert cfg.kafka.consumer["fetch_min_bytes"] == 1 and cfg.kafka.consumer["fetch_max_wait_ms"] == 1
    assert cfg.kafka.producer["linger_ms"] == 0 and cfg.kafka.producer["acks"] == 1
    assert cfg.kafka.producer["compression_type"] is None


def test_local_config_loads():
    cfg = load_config("deploy/local/freshvec.yaml")
    assert cfg.kafka.topics == ["documents"] and cfg.pipeline.dlq_topic == "documents.dlq"
    assert cfg.weaviate.collection == "Document" and cfg.http.port == 8000


def test_client_setting_overrides_merge_with_defaults():
    cfg = parse_config({"kafka": {"consumer": {"max_partition_fetch_bytes": 2048}}})
    assert cfg.kafka.consumer == {"fetch_min_bytes": 1, "fetch_max_wait_ms": 1, "max_partition_fetch_bytes": 2048}


@pytest.mark.parametrize("data, message", [
    ({"kafka": {"consumer": {"fetch_min_byte": 1}}}, "kafka.consumer: unknown consumer setting(s): fetch_min_byte"),
    # kafka-python-only: the consumer actors' client (librdkafka) has no such setting.
    ({"kafka": {"consumer": {"max_poll_records": 10}}}, "kafka.consumer: unknown consumer setting(s): max_poll_records"),
    ({"weaviate": {"colection": "X"}}, "weaviate.colection: unknown key"),
    ({"pipeline": {"max_batch_records": 0}}, "pipeline.max_batch_records: Input should be greater than 0"),
    ({"embedding": {"device": "tpu"}}, "embedding.device:"),
    ({"embedding": {"autoscaling": {"min_replicas": 3, "max_replicas": 2}}},
     "embedding.autoscaling: max_replicas (2) must be >= min_replicas (3)"),
    ({"kafka": {"topics": [""]}}, "kafka.topics: '' is not a valid Kafka topic name"),
    ({"kafka": {"topics": []}}, "kafka.topics:"),
    ({"weaviate": {"collection": "lower"}}, "weaviate.collection: 'lower' is not a Weaviate collection name"),
    ({"pipeline": {"dlq_topic": "documents"}}, "pipeline.dlq_topic ('documents') must not be one of the source topics"),
])
def test_bad_values_fail_naming_the_key(data, message):
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert message in str(err.value)


def test_yaml_problems_name_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("kafka: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(path)
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="the top level must be a mapping"):
        load_config(path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_secrets_come_from_the_environment_and_are_never_echoed(tmp_path, monkeypatch):
    path = tmp_path / "secret.yaml"
    path.write_text(
        "weaviate: {api_key: '${FV_TEST_WEAVIATE_KEY}'}\n"
        "regions:\n  us:\n    bootstrap_servers: ['h:9094']\n"
        "    security: {security_protocol: SASL_SSL, sasl_plain_username: u, sasl_plain_password: '${FV_TEST_PW}'}\n")
    monkeypatch.delenv("FV_TEST_WEAVIATE_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"weaviate.api_key: environment variable FV_TEST_WEAVIATE_KEY is not set"):
        load_config(path)
    monkeypatch.setenv("FV_TEST_WEAVIATE_KEY", "wv-s3cret")
    monkeypatch.setenv("FV_TEST_PW", "kafka-s3cret")
    cfg = load_config(path)
    assert cfg.weaviate.api_key.get_secret_value() == "wv-s3cret"
    assert "wv-s3cret" not in repr(cfg) and "wv-s3cret" not in str(cfg.model_dump())
    assert cfg.for_region("us").kafka.consumer["sasl_plain_password"] == "kafka-s3cret"

    # A bad value next to a secret: the error names the key but does not print the secret.
    with pytest.raises(ConfigError) as err:
        parse_config({"regions": {"us": {"bootstrap_servers": ["h:1"],
                                         "security": {"sasl_plain_password": "kafka-s3cret", "oops": 1}}}})
    assert "regions.us.security" in str(err.value) and "kafka-s3cret" not in str(err.value)
