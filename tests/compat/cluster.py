#!/usr/bin/env python3
"""One client's view of a running three-broker Sluice cluster.

usage: cluster.py {confluent,kafka-python} BOOTSTRAP TOPIC COUNT

Creates TOPIC with 12 partitions and 3 replicas through the client's admin
API, then checks what the client's metadata says: three brokers (ids 1, 2,
3), every partition with a leader among its three replicas and all three in
sync, each broker leading 4 partitions and holding 12 replicas. Then it
produces COUNT messages with acks=all (each to the partition its index
names, so every leader takes writes) and reads every partition back from
the beginning with assign(), comparing values and per-partition order.

Exits 0 on success, 1 with a reason otherwise.
"""

import sys
import time

PARTITIONS = 12
REPLICAS = 3
BROKERS = {1, 2, 3}
TIMEOUT_S = 60
# Between two metadata looks while the cluster settles (leaders elected,
# followers caught up into the ISR).
POLL_S = 0.2


def expected(count):
    """The messages to send: (partition, value)."""
    return [(i % PARTITIONS, f"spread-{i}".encode()) for i in range(count)]


def check_layout(brokers, partitions):
    """brokers: the broker ids the client lists; partitions: {partition:
    (leader, replicas, isr)}. Returns None or what is wrong."""
    if set(brokers) != BROKERS:
        return f"brokers {sorted(brokers)}, want {sorted(BROKERS)}"
    if sorted(partitions) != list(range(PARTITIONS)):
        return f"partitions {sorted(partitions)}"
    leading = {broker: 0 for broker in BROKERS}
    holding = {broker: 0 for broker in BROKERS}
    for partition, (leader, replicas, isr) in sorted(partitions.items()):
        if len(replicas) != REPLICAS or set(replicas) != BROKERS:
            return f"partition {partition}: replicas {replicas}"
        if set(isr) != BROKERS:
            return f"partition {partition}: isr {isr}"
        if leader not in replicas:
            return f"partition {partition}: leader {leader} not among {replicas}"
        leading[leader] += 1
        for replica in replicas:
            holding[replica] += 1
    even = PARTITIONS // len(BROKERS)
    if any(count != even for count in leading.values()):
        return f"leaders per broker {leading}, want {even} each"
    if any(count != PARTITIONS for count in holding.values()):
        return f"replicas per broker {holding}"
    return None


def settle(look):
    """Calls look() -> (brokers, partitions) until check_layout passes or
    TIMEOUT_S passes; returns None or the last complaint."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        problem = check_layout(*look())
        if problem is None or time.monotonic() > deadline:
            return problem
        time.sleep(POLL_S)


def compare(sent, got):
    """sent: [(partition, value)]; got: {partition: [values in offset
    order]}. Returns None or the first difference."""
    want = {}
    for partition, value in sent:
        want.setdefault(partition, []).append(value)
    for partition in range(PARTITIONS):
        if got.get(partition, []) != want.get(partition, []):
            return (f"partition {partition}: read {len(got.get(partition, []))}, "
                    f"sent {len(want.get(partition, []))}")
    return None


def run_confluent(bootstrap, topic, count):
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS,
                                  replication_factor=REPLICAS)])[topic].result(TIMEOUT_S)

    def look():
        listed = admin.list_topics(topic=topic, timeout=TIMEOUT_S)
        partitions = {}
        if topic in listed.topics:
            for partition in listed.topics[topic].partitions.values():
                partitions[partition.id] = (partition.leader, list(partition.replicas),
                                            list(partition.isrs))
        return list(listed.brokers), partitions

    problem = settle(look)
    if problem:
        return problem

    sent = expected(count)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    failures = []
    for partition, value in sent:
        producer.produce(topic, value=value, partition=partition,
                         on_delivery=lambda error, _message: error and failures.append(error))
        producer.poll(0)
    if producer.flush(TIMEOUT_S) != 0 or failures:
        return f"produce: {len(failures)} failed, e.g. {failures[:1]}"

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-reader",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, partition, 0) for partition in range(PARTITIONS)])
    got = {}
    deadline = time.monotonic() + TIMEOUT_S
    while sum(len(values) for values in got.values()) < count and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        if message.error():
            return f"consume: {message.error()}"
        got.setdefault(message.partition(), []).append(message.value())
    consumer.close()
    return compare(sent, got)


def run_kafka_python(bootstrap, topic, count):
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=TIMEOUT_S * 1000)
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=REPLICAS)])

    def field(entry, *names):
        # kafka-python 2.x names the fields as its own protocol classes did
        # (node_id, leader, replicas, isr), 3.x as Kafka's schemas do
        # (broker_id, leader_id, replica_nodes, isr_nodes).
        for name in names:
            if name in entry:
                return entry[name]
        raise KeyError(f"none of {names} in {sorted(entry)}")

    def look():
        brokers = [field(broker, "broker_id", "node_id")
                   for broker in admin.describe_cluster()["brokers"]]
        partitions = {}
        for described in admin.describe_topics([topic]):
            for partition in described["partitions"]:
                partitions[field(partition, "partition_index", "partition")] = (
                    field(partition, "leader_id", "leader"),
                    list(field(partition, "replica_nodes", "replicas")),
                    list(field(partition, "isr_nodes", "isr")))
        return brokers, partitions

    problem = settle(look)
    admin.close()
    if problem:
        return problem

    sent = expected(count)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    futures = [producer.send(topic, value=value, partition=partition) for partition, value in sent]
    producer.flush(TIMEOUT_S)
    for future in futures:
        future.get(TIMEOUT_S)
    producer.close()

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=TIMEOUT_S * 1000)
    consumer.assign([TopicPartition(topic, partition) for partition in range(PARTITIONS)])
    consumer.seek_to_beginning()
    got = {}
    for message in consumer:
        got.setdefault(message.partition, []).append(message.value)
        if sum(len(values) for values in got.values()) >= count:
            break
    consumer.close()
    return compare(sent, got)


def main():
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    client, bootstrap, topic, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    runners = {"confluent": run_confluent, "kafka-python": run_kafka_python}
    if client not in runners:
        print(__doc__, file=sys.stderr)
        return 2
    problem = runners[client](bootstrap, topic, count)
    if problem:
        print(f"{client}: {problem}")
        return 1
    print(f"{client}: three brokers, {PARTITIONS} partitions x {REPLICAS} replicas spread evenly, "
          f"{count} messages read back")
    return 0


if __name__ == "__main__":
    sys.exit(main())
