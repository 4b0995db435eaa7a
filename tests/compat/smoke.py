#!/usr/bin/env python3
"""One client's smoke scenario against a running Sluice broker.

usage: smoke.py {confluent,kafka-python,confluent-admin,kafka-python-admin} BOOTSTRAP TOPIC COUNT

confluent, kafka-python: creates TOPIC (3 partitions) with the client's
admin API, produces COUNT keyed messages with headers, reads every
partition back from the beginning with assign(), and compares keys, values,
headers and per-partition order with what was sent. kafka-python's consumer
must also have read in an incremental fetch session (KIP-227).

confluent-admin, kafka-python-admin: the topic administration round trip
(create with a config, describe and alter configs, add partitions, describe
the cluster, delete) through the client's admin API; COUNT is unused.

Exits 0 on success, 1 with a reason otherwise.
"""

import logging
import sys
import time

PARTITIONS = 3
TIMEOUT_S = 60
# The Kafka release kafka-python must infer from Sluice's ApiVersions.
INFERRED_KAFKA = (4, 2)
# Incremental fetches kafka-python must have had answered in its session,
# and how long it may poll after catching up to get them.
SESSION_FETCHES_MIN = 3
QUIET_FETCHES_S = 10


def expected(count):
    """The messages to send: (key, value, headers)."""
    out = []
    for i in range(count):
        key = f"key-{i % 17}".encode()
        value = (f"value-{i}-" + "x" * (i % 50)).encode()
        headers = [("index", str(i).encode())]
        out.append((key, value, headers))
    return out


def compare(sent, got):
    """sent: list of (key, value, headers); got: list of (partition, offset,
    key, value, headers). Returns None or the first difference."""
    if len(got) != len(sent):
        return f"read {len(got)} messages, sent {len(sent)}"
    by_index = {}
    for partition, offset, key, value, headers in got:
        index = int(dict(headers)["index"])
        if index in by_index:
            return f"message {index} read twice"
        by_index[index] = (partition, offset, key, value, headers)
    last = {}
    for i, (key, value, headers) in enumerate(sent):
        if i not in by_index:
            return f"message {i} missing"
        partition, offset, got_key, got_value, got_headers = by_index[i]
        if (got_key, got_value, list(got_headers)) != (key, value, headers):
            return f"message {i} differs: {got_key!r} {got_value!r} {got_headers!r}"
        # Same key -> same partition, in the order sent.
        previous = last.get(key)
        if previous is not None:
            if previous[0] != partition:
                return f"key {key!r} in partitions {previous[0]} and {partition}"
            if previous[1] >= offset:
                return f"key {key!r}: message {i} at offset {offset} not after {previous[1]}"
        last[key] = (partition, offset)
    per_partition = {}
    for partition, offset, *_ in got:
        per_partition.setdefault(partition, []).append(offset)
    for partition, offsets in per_partition.items():
        if sorted(offsets) != list(range(len(offsets))):
            return f"partition {partition} offsets are not 0..{len(offsets) - 1}"
    return None


def run_confluent(bootstrap, topic, count):
    from confluent_kafka import Consumer, Producer, TopicPartition, OFFSET_BEGINNING
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
    futures[topic].result(TIMEOUT_S)

    sent = expected(count)
    errors = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                         "compression.type": "zstd", "linger.ms": 5})

    def report(error, _message):
        if error is not None:
            errors.append(str(error))

    for key, value, headers in sent:
        while True:
            try:
                producer.produce(topic, key=key, value=value, headers=headers, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.01)
    if producer.flush(TIMEOUT_S) != 0:
        return "messages still queued after flush"
    if errors:
        return f"delivery failed: {errors[0]}"

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "compat-confluent",
                         "enable.auto.commit": False, "enable.partition.eof": False})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    got = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(got) < count and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        if message.error():
            return f"consumer error: {message.error()}"
        got.append((message.partition(), message.offset(), message.key(), message.value(),
                    list(message.headers() or [])))
    consumer.close()
    return compare(sent, got)


def run_kafka_python(bootstrap, topic, count):
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=TIMEOUT_S * 1000)
    # Left to inference (no api_version), kafka-python names the broker's
    # Kafka release from its ApiVersions answer (ListOffsets v11 is 4.2's),
    # and then speaks the newest versions both sides have.
    inferred = tuple(admin._client.check_version()[:2])
    if inferred != INFERRED_KAFKA:
        return f"kafka-python inferred Kafka {inferred} from ApiVersions, expected {INFERRED_KAFKA}"
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
    admin.close()

    sent = expected(count)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type="gzip", linger_ms=5)
    futures = [producer.send(topic, key=key, value=value, headers=headers) for key, value, headers in sent]
    producer.flush(TIMEOUT_S)
    for i, future in enumerate(futures):
        try:
            future.get(TIMEOUT_S)
        except Exception as error:  # noqa: BLE001 - report any client failure
            return f"message {i} not delivered: {error}"
    producer.close()

    # kafka-python fetches in incremental fetch sessions (KIP-227) by
    # default; its session handler logs how the broker answered each fetch.
    sessions = SessionLog()
    logging.getLogger("kafka.consumer.fetcher").addHandler(sessions)
    logging.getLogger("kafka.consumer.fetcher").setLevel(logging.DEBUG)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                             auto_offset_reset="earliest", max_partition_fetch_bytes=4096)
    partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    got = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(got) < count and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            for record in records:
                got.append((record.partition, record.offset, record.key, record.value, list(record.headers)))
    # Caught up: fetches with no news, answered about no partition.
    quiet_until = time.monotonic() + QUIET_FETCHES_S
    while sessions.incremental < SESSION_FETCHES_MIN and time.monotonic() < quiet_until:
        for records in consumer.poll(timeout_ms=300).values():
            got.extend((r.partition, r.offset, r.key, r.value, list(r.headers)) for r in records)
    consumer.close()
    difference = compare(sent, got)
    if difference is not None:
        return difference
    return sessions.problem()


class SessionLog(logging.Handler):
    """Counts how the broker answered kafka-python's fetches."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.opened = 0
        self.incremental = 0
        self.failures = []

    def emit(self, record):
        text = record.getMessage()
        if "created a new incremental fetch session" in text:
            self.opened += 1
        elif "sent an incremental fetch response for session" in text:
            self.incremental += 1
        elif "invalid" in text or "unable to process" in text:
            self.failures.append(text)

    def problem(self):
        if self.failures:
            return f"fetch session failure: {self.failures[0]}"
        if self.opened == 0:
            return "no fetch session was opened"
        if self.incremental < SESSION_FETCHES_MIN:
            return f"only {self.incremental} incremental fetches were answered in a session"
        return None


def run_confluent_admin(bootstrap, topic, _count):
    from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                       NewPartitions, NewTopic, ResourceType)

    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(topic, num_partitions=2, replication_factor=1, config={"retention.ms": "100000"})
    admin.create_topics([new])[topic].result(TIMEOUT_S)
    resource = ConfigResource(ResourceType.TOPIC, topic)

    def configs():
        return {name: entry.value for name, entry in admin.describe_configs([resource])[resource].result(TIMEOUT_S).items()}

    if configs().get("retention.ms") != "100000":
        return f"retention.ms after create: {configs().get('retention.ms')}"
    # IncrementalAlterConfigs: SET one config, the other stays.
    change = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("segment.bytes", "1048576", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([change])[change].result(TIMEOUT_S)
    now = configs()
    if (now.get("retention.ms"), now.get("segment.bytes")) != ("100000", "1048576"):
        return f"after incremental alter: retention.ms={now.get('retention.ms')} segment.bytes={now.get('segment.bytes')}"
    # A bad value is refused and changes nothing.
    bad = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET)])
    try:
        admin.incremental_alter_configs([bad])[bad].result(TIMEOUT_S)
        return "an invalid retention.ms was accepted"
    except Exception as error:  # noqa: BLE001 - any admin error is the expected refusal
        if "INVALID_CONFIG" not in str(error) and "InvalidConfig" not in str(error):
            return f"unexpected error for an invalid config: {error}"
    # DELETE goes back to the default.
    reset = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)])
    admin.incremental_alter_configs([reset])[reset].result(TIMEOUT_S)
    if configs().get("retention.ms") == "100000":
        return "retention.ms kept its value after DELETE"

    admin.create_partitions([NewPartitions(topic, 5)])[topic].result(TIMEOUT_S)
    listed = admin.list_topics(timeout=TIMEOUT_S).topics
    if topic not in listed or len(listed[topic].partitions) != 5:
        return f"after create_partitions: {listed.get(topic)}"

    cluster = admin.describe_cluster().result(TIMEOUT_S)
    if len(cluster.nodes) != 1 or cluster.controller is None or not cluster.cluster_id:
        return f"describe_cluster: {cluster}"

    admin.delete_topics([topic])[topic].result(TIMEOUT_S)
    deadline = time.monotonic() + TIMEOUT_S
    while topic in admin.list_topics(timeout=TIMEOUT_S).topics:
        if time.monotonic() > deadline:
            return "the deleted topic is still listed"
        time.sleep(0.1)
    return None


def run_kafka_python_admin(bootstrap, topic, _count):
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=TIMEOUT_S * 1000)
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1,
                                  topic_configs={"retention.ms": "100000"})])

    def configs():
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        return {name: entry["value"] for name, entry in described["topic"][topic].items()}

    if configs().get("retention.ms") != "100000":
        return f"retention.ms after create: {configs().get('retention.ms')}"
    # IncrementalAlterConfigs (kafka-python's default when the broker has it).
    result = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs={"segment.bytes": "1048576"})])
    if result != {"topic": {topic: "OK"}}:
        return f"incremental alter_configs: {result}"
    now = configs()
    if (now.get("retention.ms"), now.get("segment.bytes")) != ("100000", "1048576"):
        return f"after incremental alter: {now}"
    # The legacy AlterConfigs (kafka-python resends the other overrides).
    result = admin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic, configs={"segment.bytes": "2097152"})], incremental=False)
    if result != {"topic": {topic: "OK"}}:
        return f"legacy alter_configs: {result}"
    now = configs()
    if (now.get("retention.ms"), now.get("segment.bytes")) != ("100000", "2097152"):
        return f"after legacy alter: {now}"

    # Broker configs as Kafka describes them: source, type and synonyms.
    broker_id = admin.describe_cluster()["brokers"][0]["broker_id"]
    described = admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, str(broker_id))],
                                       include_synonyms=True, config_filter="all")
    broker = described["broker"][str(broker_id)]
    retention = broker.get("log.retention.ms", {})
    shape = (retention.get("value"), retention.get("config_source"), retention.get("config_type"),
             [(synonym["name"], synonym["source"]) for synonym in retention.get("synonyms", [])])
    if shape != ("604800000", "DEFAULT_CONFIG", "LONG", [("log.retention.ms", "DEFAULT_CONFIG")]):
        return f"broker log.retention.ms: {retention}"
    log_dirs = broker.get("log.dirs", {})
    if (log_dirs.get("config_source"), log_dirs.get("config_type"), log_dirs.get("read_only")) != \
            ("STATIC_BROKER_CONFIG", "STRING", True):
        return f"broker log.dirs: {log_dirs}"
    # A topic config's synonyms: its own value, then the broker's default.
    described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)],
                                       include_synonyms=True, config_filter="all")
    retention = described["topic"][topic].get("retention.ms", {})
    synonyms = [(synonym["name"], synonym["value"], synonym["source"])
                for synonym in retention.get("synonyms", [])]
    if synonyms != [("retention.ms", "100000", "DYNAMIC_TOPIC_CONFIG"),
                    ("log.retention.ms", "604800000", "DEFAULT_CONFIG")]:
        return f"topic retention.ms synonyms: {retention}"
    listed = admin.list_config_resources()
    if topic not in listed.get("topic", []) or listed.get("broker") != [str(broker_id)]:
        return f"list_config_resources: {listed}"

    admin.create_partitions({topic: NewPartitions(total_count=4)})
    described = admin.describe_topics([topic])
    if len(described) != 1 or len(described[0]["partitions"]) != 4:
        return f"after create_partitions: {described}"
    cluster = admin.describe_cluster()
    if len(cluster["brokers"]) != 1:
        return f"describe_cluster: {cluster}"
    admin.delete_topics([topic])
    if topic in admin.list_topics():
        return "the deleted topic is still listed"
    admin.close()
    return None


def main():
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    client, bootstrap, topic, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    runners = {
        "confluent": run_confluent,
        "kafka-python": run_kafka_python,
        "confluent-admin": run_confluent_admin,
        "kafka-python-admin": run_kafka_python_admin,
    }
    if client not in runners:
        print(f"unknown client {client}", file=sys.stderr)
        return 2
    problem = runners[client](bootstrap, topic, count)
    if problem:
        print(f"{client}: {problem}")
        return 1
    print(f"{client}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
