"""Kafka for every part: client settings, the admin client, topics, and the translation of Kafka's errors.

Settings: as the config names them (kafka-python's names), in librdkafka's terms.

The supervisor's topic admin, `freshvec status` and the benchmark's baseline use kafka-python;
the consumer actors and `freshvec produce` use confluent-kafka (librdkafka, in C), where
kafka-python's I/O thread cost each idle consumer ~3 % of a core. One spelling in the config
reaches both: this module says which settings have a librdkafka equivalent, and the config refuses
the others by name instead of one client silently ignoring them.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from freshvec.core.errors import ConfigError, KafkaRefused, KafkaUnavailableError

# Settings of all clients, by kafka-python name -> librdkafka name.
_COMMON = {
    "client_id": "client.id",
    "connections_max_idle_ms": "connections.max.idle.ms",
    "metadata_max_age_ms": "metadata.max.age.ms",
    "reconnect_backoff_ms": "reconnect.backoff.ms",
    "reconnect_backoff_max_ms": "reconnect.backoff.max.ms",
    "retry_backoff_ms": "retry.backoff.ms",
    "receive_message_max_bytes": "receive.message.max.bytes",
    "receive_buffer_bytes": "socket.receive.buffer.bytes",
    "send_buffer_bytes": "socket.send.buffer.bytes",
}
# TLS and SASL: what a region may set for its brokers.
SECURITY = {
    "security_protocol": "security.protocol",
    "sasl_mechanism": "sasl.mechanisms",
    "sasl_plain_username": "sasl.username",
    "sasl_plain_password": "sasl.password",
    "sasl_kerberos_service_name": "sasl.kerberos.service.name",
    "ssl_cafile": "ssl.ca.location",
    "ssl_certfile": "ssl.certificate.location",
    "ssl_keyfile": "ssl.key.location",
    "ssl_password": "ssl.key.password",
    "ssl_crlfile": "ssl.crl.location",
    "ssl_ciphers": "ssl.cipher.suites",
    "ssl_check_hostname": "ssl.endpoint.identification.algorithm",
}
CONSUMER = {
    **_COMMON, **SECURITY,
    "fetch_min_bytes": "fetch.min.bytes",
    "fetch_max_wait_ms": "fetch.wait.max.ms",
    "fetch_max_bytes": "fetch.max.bytes",
    "max_partition_fetch_bytes": "max.partition.fetch.bytes",
    "check_crcs": "check.crcs",
    "isolation_level": "isolation.level",
    "client_rack": "client.rack",
    "session_timeout_ms": "session.timeout.ms",
    "heartbeat_interval_ms": "heartbeat.interval.ms",
    "max_poll_interval_ms": "max.poll.interval.ms",
}
PRODUCER = {
    **_COMMON, **SECURITY,
    "acks": "acks",
    "linger_ms": "linger.ms",
    "compression_type": "compression.type",
    "enable_idempotence": "enable.idempotence",
    "batch_size": "batch.size",
    "max_in_flight_requests_per_connection": "max.in.flight.requests.per.connection",
    "max_request_size": "message.max.bytes",
    "request_timeout_ms": "request.timeout.ms",
    "delivery_timeout_ms": "delivery.timeout.ms",
    "retries": "retries",
}


def _value(name: str, value: Any) -> Any:
    if name == "compression_type" and value is None:
        return "none"
    if name == "ssl_check_hostname":
        return "https" if value else "none"
    return value


def librdkafka(settings: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """`settings` (validated kafka-python names) as a confluent-kafka config dict."""
    return {names[key]: _value(key, value) for key, value in settings.items()}


def producer_config(kafka) -> dict[str, Any]:
    """A confluent-kafka Producer's config: `kafka`'s (a KafkaConfig) brokers and producer settings.

    Keys are partitioned as the Java client (and kafka-python) does, murmur2: librdkafka's default,
    CRC32, sends a key to another partition than a Java producer of the same topic would, and a key
    written by both would then have no order (a reindex's replay wrote the older text last)."""
    return {"bootstrap.servers": ",".join(kafka.bootstrap_servers), "partitioner": "murmur2_random",
            **librdkafka(kafka.producer, PRODUCER)}


# What a broker answers when waiting cannot help: credentials or permissions (librdkafka's and
# kafka-python's names). Anything else (no broker, a leader moving, a timeout) is worth retrying.
REFUSALS = ("AUTHENTICATION", "AUTHORIZATION", "SASL", "SSL_HANDSHAKE", "UNSUPPORTED_SASL")


@contextmanager
def kafka_errors(action: str, brokers: list[str] | None = None) -> Iterator[None]:
    """Translate both clients' errors into the project's: ConfigError (librdkafka refuses a setting's
    value), KafkaRefused (credentials, permissions, a fatal client error) or KafkaUnavailableError."""
    from confluent_kafka import KafkaException
    from kafka.errors import KafkaError as PythonKafkaError

    try:
        yield
    except (KafkaException, PythonKafkaError) as exc:
        error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else exc
        name = error.name() if hasattr(error, "name") and callable(error.name) else type(error).__name__
        fatal = bool(getattr(error, "fatal", lambda: False)())
        where = f" ({', '.join(brokers)})" if brokers else ""
        message = f"kafka {action} failed{where}: {error}"
        if name == "_INVALID_ARG":
            raise ConfigError(f"{message} (check kafka.consumer / kafka.producer)") from exc
        if fatal or any(word in name.upper() for word in REFUSALS):
            raise KafkaRefused(message) from exc
        raise KafkaUnavailableError(message) from exc


def reachable(address: str, timeout_s: float = 3.0) -> bool:
    """Does anything accept a TCP connection at host:port?"""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
        return True
    except (OSError, ValueError):
        return False


def admin(kafka):
    """A kafka-python admin client for `kafka` (a KafkaConfig); KafkaUnavailableError when no broker answers."""
    from kafka import KafkaAdminClient

    if not any(reachable(a) for a in kafka.bootstrap_servers):  # kafka-python would retry for 30 s
        raise KafkaUnavailableError(f"Kafka at {', '.join(kafka.bootstrap_servers)} does not answer; start it "
                                    "(make services-up) or fix kafka.bootstrap_servers")
    security = {k: v for k, v in kafka.consumer.items() if k.startswith(("security_", "sasl_", "ssl_"))}
    with kafka_errors("connect", kafka.bootstrap_servers):
        return KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers, request_timeout_ms=10_000, **security)


def ensure_topics(kafka, topics: dict[str, int], configs: dict[str, dict[str, str]] | None = None) -> None:
    """Create each topic of `topics` (name -> partitions) that is missing, with its `configs` (topic settings)."""
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    client = admin(kafka)
    try:
        with kafka_errors("topic creation", kafka.bootstrap_servers):
            missing = [NewTopic(t, n, 1, topic_configs=(configs or {}).get(t) or {})
                       for t, n in topics.items() if t not in set(client.list_topics())]
            if missing:
                try:
                    client.create_topics(missing)
                except TopicAlreadyExistsError:
                    pass
    finally:
        client.close()


def partitions(client, topics: list[str]) -> list[tuple[str, int, int | None]]:
    """(topic, partition, leader broker id) of every partition of `topics`."""
    with kafka_errors("describe topics"):
        described = client.describe_topics(topics)
    out = []
    for desc in described:
        if desc.get("error_code", 0) == 0:
            out.extend((desc["name"], p["partition_index"], p.get("leader_id")) for p in desc["partitions"])
    return sorted(out)


def broker_racks(client) -> dict[int, str]:
    try:
        return {b["node_id"]: b["rack"] for b in client.describe_cluster()["brokers"] if b.get("rack")}
    except Exception:  # racks are only a placement preference
        return {}


def _confluent_settings(kafka) -> dict[str, Any]:
    security = {k: v for k, v in kafka.consumer.items() if k in SECURITY}
    return {"bootstrap.servers": ",".join(kafka.bootstrap_servers), **librdkafka(security, SECURITY)}


def replay_problems(kafka, topics: list[str]) -> list[str]:
    """Why a replay of `topics` from their beginning would miss documents: a partition whose log no
    longer starts at offset 0 in a topic that is not compacted (its early records were deleted, not
    compacted to each key's latest). Empty when every live document can be read again."""
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient, ConfigResource

    problems = []
    with kafka_errors("checking the topics for a replay", kafka.bootstrap_servers):
        resources = [ConfigResource("topic", t) for t in topics]
        client = AdminClient(_confluent_settings(kafka))  # held until the futures are done
        described = client.describe_configs(resources)
        policies = {r.name: f.result(timeout=10)["cleanup.policy"].value for r, f in described.items()}
        consumer = Consumer({**_confluent_settings(kafka), "group.id": "freshvec-replay-check",
                             "enable.auto.commit": False})
        try:
            for topic in topics:
                if "compact" in policies[topic]:
                    continue
                meta = consumer.list_topics(topic, timeout=10).topics[topic]
                for p in sorted(meta.partitions):
                    low, _ = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                    if low > 0:
                        problems.append(f"topic {topic} partition {p} starts at offset {low}, not 0, and the topic "
                                        f"is not compacted (cleanup.policy={policies[topic]}): the documents "
                                        "before it are gone and a replay would miss them")
        finally:
            consumer.close()
    return problems


def committed_offsets(kafka, group: str, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int | None]:
    """Group `group`'s committed offset of each (topic, partition); None where it has none."""
    from confluent_kafka import Consumer, TopicPartition

    with kafka_errors("reading committed offsets", kafka.bootstrap_servers):
        consumer = Consumer({**_confluent_settings(kafka), "group.id": group, "enable.auto.commit": False})
        try:
            found = consumer.committed([TopicPartition(t, p) for t, p in partitions], timeout=10)
        finally:
            consumer.close()
    return {(tp.topic, tp.partition): tp.offset if tp.offset >= 0 else None for tp in found}


def delete_group(kafka, group: str) -> None:
    """Delete consumer group `group` (a finished reindex's); no error when it is gone already."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    with kafka_errors("deleting a consumer group", kafka.bootstrap_servers):
        client = AdminClient(_confluent_settings(kafka))  # held until the futures are done
        for future in client.delete_consumer_groups([group]).values():
            try:
                future.result(timeout=10)
            except KafkaException as exc:
                if "GROUP_ID_NOT_FOUND" not in str(exc):
                    raise
