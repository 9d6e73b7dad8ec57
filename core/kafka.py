"""Kafka client settings as the config names them (kafka-python's names), in librdkafka's terms.

The supervisor's topic admin, `freshvec status` and the benchmark's baseline use kafka-python;
the consumer actors and `freshvec produce` use confluent-kafka (librdkafka, in C), where
kafka-python's I/O thread cost each idle consumer ~3 % of a core. One spelling in the config
reaches both: this module says which settings have a librdkafka equivalent, and the config refuses
the others by name instead of one client silently ignoring them.
"""

from __future__ import annotations

from typing import Any

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
    """A confluent-kafka Producer's config: `kafka`'s (a KafkaConfig) brokers and producer settings."""
    return {"bootstrap.servers": ",".join(kafka.bootstrap_servers), **librdkafka(kafka.producer, PRODUCER)}
