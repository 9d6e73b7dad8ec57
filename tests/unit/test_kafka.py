"""The config's Kafka client settings mean the same to kafka-python and to librdkafka."""

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from kafka import KafkaConsumer, KafkaProducer

from freshvec.core import kafka as kafka_names


@pytest.mark.parametrize("names, kafka_python", [
    (kafka_names.CONSUMER, KafkaConsumer), (kafka_names.PRODUCER, KafkaProducer)])
def test_every_accepted_name_is_a_kafka_python_setting(names, kafka_python):
    assert set(names) <= set(kafka_python.DEFAULT_CONFIG)


@pytest.mark.parametrize("names, client", [(kafka_names.CONSUMER, Consumer), (kafka_names.PRODUCER, Producer)])
def test_every_translated_name_is_a_librdkafka_property(names, client):
    unknown = []
    for name in names.values():
        try:  # a wrong value is fine here (and expected for some); an unknown name is not
            client({"group.id": "probe", name: "1"}).close() if client is Consumer else client({name: "1"}).flush(0)
        except KafkaException as exc:
            if "No such configuration property" in str(exc):
                unknown.append(name)
    assert not unknown


def test_sasl_ssl_settings_translate():
    settings = {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "u",
                "sasl_plain_password": "p", "ssl_cafile": "/ca.pem", "ssl_check_hostname": False,
                "fetch_max_wait_ms": 100}
    assert kafka_names.librdkafka(settings, kafka_names.CONSUMER) == {
        "security.protocol": "SASL_SSL", "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "u",
        "sasl.password": "p", "ssl.ca.location": "/ca.pem", "ssl.endpoint.identification.algorithm": "none",
        "fetch.wait.max.ms": 100}
    assert kafka_names.librdkafka({"compression_type": None, "acks": 1}, kafka_names.PRODUCER) == {
        "compression.type": "none", "acks": 1}
