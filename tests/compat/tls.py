"""Produce and consume over TLS and SASL (SSL, SASL_SSL, SASL_PLAINTEXT)
with the Python clients.

usage: tls.py confluent|kafka-python BOOTSTRAP PKI_DIR SSL|SASL_SSL|SASL_PLAINTEXT MECHANISM PASSWORD TOPIC N

PKI_DIR holds ca.pem (the CA the broker's certificate chains to) and, for
SSL, client.pem and client.key (a client certificate of that CA: the broker
asks for one); SASL_PLAINTEXT does not use it. On SASL_SSL and
SASL_PLAINTEXT the client logs in as `admin` with MECHANISM (PLAIN,
SCRAM-SHA-256 or SCRAM-SHA-512) and PASSWORD; on SSL both are ignored
("-").

Creates TOPIC (one partition), produces N keyed records with acks=all,
reads them back from the beginning and compares them in order. Exits
non-zero with a message on the first check that fails.
"""

import sys
import time

TIMEOUT_S = 60

client, bootstrap, pki, protocol, mechanism, password, topic, count = sys.argv[1:9]
count = int(count)
ca = f"{pki}/ca.pem"
certificate = f"{pki}/client.pem"
key = f"{pki}/client.key"
sent = [(f"key-{i % 7}".encode(), f"tls-{protocol}-{i}".encode()) for i in range(count)]


def fail(message):
    print(f"FAILED: {message}")
    sys.exit(1)


def confluent():
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    settings = {
        "bootstrap.servers": bootstrap,
        "security.protocol": protocol,
    }
    if protocol != "SASL_PLAINTEXT":
        settings["ssl.ca.location"] = ca
    if protocol == "SSL":
        settings["ssl.certificate.location"] = certificate
        settings["ssl.key.location"] = key
    else:
        settings.update(
            {"sasl.mechanism": mechanism, "sasl.username": "admin", "sasl.password": password}
        )
    admin = AdminClient(settings)
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        future.result(TIMEOUT_S)
    producer = Producer({**settings, "acks": "all"})
    failures = []

    def delivered(error, _message):
        if error is not None:
            failures.append(error)

    for k, v in sent:
        producer.produce(topic, key=k, value=v, partition=0, on_delivery=delivered)
        producer.poll(0)
    if producer.flush(TIMEOUT_S) != 0 or failures:
        fail(f"produce: {failures[:3]} (undelivered or failed)")
    consumer = Consumer(
        {**settings, "group.id": f"{topic}-reader", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.time() + TIMEOUT_S
    while len(got) < count and time.time() < deadline:
        message = consumer.poll(1.0)
        if message is None:
            continue
        if message.error():
            fail(f"consume: {message.error()}")
        got.append((message.key(), message.value()))
    consumer.close()
    return got


def kafka_python():
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic

    settings = {
        "bootstrap_servers": bootstrap,
        "security_protocol": protocol,
    }
    if protocol != "SASL_PLAINTEXT":
        settings["ssl_cafile"] = ca
        settings["ssl_check_hostname"] = True
    if protocol == "SSL":
        settings["ssl_certfile"] = certificate
        settings["ssl_keyfile"] = key
    else:
        settings.update(
            {
                "sasl_mechanism": mechanism,
                "sasl_plain_username": "admin",
                "sasl_plain_password": password,
            }
        )
    admin = KafkaAdminClient(**settings)
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    producer = KafkaProducer(acks="all", **settings)
    futures = [producer.send(topic, key=k, value=v, partition=0) for k, v in sent]
    producer.flush(TIMEOUT_S)
    for future in futures:
        future.get(TIMEOUT_S)
    producer.close()
    consumer = KafkaConsumer(enable_auto_commit=False, **settings)
    consumer.assign([TopicPartition(topic, 0)])
    consumer.seek_to_beginning()
    got = []
    deadline = time.time() + TIMEOUT_S
    while len(got) < count and time.time() < deadline:
        for records in consumer.poll(timeout_ms=1000).values():
            got.extend((record.key, record.value) for record in records)
    consumer.close()
    return got


got = confluent() if client == "confluent" else kafka_python()
if got != sent:
    first = next((i for i, (a, b) in enumerate(zip(sent, got)) if a != b), min(len(sent), len(got)))
    fail(f"read {len(got)} records, sent {count}; first difference at {first}")
print(f"{client} {protocol} {mechanism}: {count} records produced and read back in order")
