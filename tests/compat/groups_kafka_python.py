#!/usr/bin/env python3
"""A kafka-python consumer group of three against a running Sluice broker.

usage: groups_kafka_python.py BOOTSTRAP TOPIC COUNT

Creates TOPIC with 6 partitions, starts three KafkaConsumer instances (one
thread each) in one group with subscribe(), waits until each owns exactly
2 partitions and together all 6, then produces COUNT messages. Every message
must be read exactly once, each member committing synchronously after what
it processed. After the members close, the group's committed offsets
(through the admin client) must be the end of every partition.

Exits 0 on success, 1 with a reason otherwise.
"""

import sys
import threading
import time
import uuid

PARTITIONS = 6
MEMBERS = 3
TIMEOUT_S = 90


def fail(reason):
    print(reason)
    sys.exit(1)


def main():
    if len(sys.argv) != 4:
        fail(__doc__)
    bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
    group = f"kafka-python-group-{uuid.uuid4().hex[:8]}"

    stop = threading.Event()
    lock = threading.Lock()
    read = []  # (member, partition, offset, value)
    assignments = [set() for _ in range(MEMBERS)]
    errors = []

    def member(index):
        try:
            consumer = KafkaConsumer(
                bootstrap_servers=bootstrap,
                group_id=group,
                client_id=f"member-{index}",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=10000,
                heartbeat_interval_ms=1000,
            )
            consumer.subscribe([topic])
            while not stop.is_set():
                batch = consumer.poll(timeout_ms=200)
                records = [record for records in batch.values() for record in records]
                with lock:
                    for record in records:
                        read.append((index, record.partition, record.offset, record.value))
                if records:
                    # Synchronous commit of what was just processed.
                    consumer.commit()
                with lock:
                    assignments[index] = {tp.partition for tp in consumer.assignment()}
            consumer.close()
        except Exception as error:  # noqa: BLE001 - reported to the checker
            with lock:
                errors.append(f"member {index}: {error!r}")

    threads = [threading.Thread(target=member, args=(i,), daemon=True) for i in range(MEMBERS)]
    for thread in threads:
        thread.start()

    def split():
        with lock:
            owned = [set(a) for a in assignments]
        union = set().union(*owned)
        sizes = [len(a) for a in owned]
        return sizes == [2] * MEMBERS and union == set(range(PARTITIONS)), owned

    deadline = time.time() + TIMEOUT_S
    while True:
        ok, owned = split()
        if ok:
            break
        if errors or time.time() > deadline:
            stop.set()
            fail(f"no 2/2/2 split: assignments {owned}, errors {errors}")
        time.sleep(0.2)

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    futures = [
        producer.send(topic, value=f"m-{i}".encode(), partition=i % PARTITIONS)
        for i in range(count)
    ]
    producer.flush()
    for future in futures:
        future.get(timeout=30)
    producer.close()

    while True:
        with lock:
            done = len(read) >= count
        if done:
            break
        if errors or time.time() > deadline:
            stop.set()
            fail(f"read {len(read)} of {count}; errors {errors}")
        time.sleep(0.2)
    # Anything read twice would arrive shortly after.
    time.sleep(1.0)
    ok, owned = split()
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    if errors:
        fail(f"errors: {errors}")
    if not ok:
        fail(f"the split changed while consuming: {owned}")

    values = [value for _, _, _, value in read]
    if len(values) != count or len(set(values)) != count:
        fail(f"read {len(values)} messages ({len(set(values))} distinct), sent {count}")
    if set(values) != {f"m-{i}".encode() for i in range(count)}:
        fail("the messages read are not the messages sent")
    for member_index in range(MEMBERS):
        partitions = {p for m, p, _, _ in read if m == member_index}
        if not partitions <= owned[member_index]:
            fail(f"member {member_index} read partitions {partitions} outside {owned[member_index]}")

    expected = {p: len([i for i in range(count) if i % PARTITIONS == p]) for p in range(PARTITIONS)}
    # kafka-python 2.x calls it list_consumer_group_offsets, 3.x
    # list_group_offsets.
    list_offsets = getattr(admin, "list_consumer_group_offsets", None) or admin.list_group_offsets
    committed = list_offsets(group)
    # 3.x answers {group: {TopicPartition: OffsetAndMetadata}}.
    if group in committed:
        committed = committed[group]
    got = {
        tp.partition: getattr(meta, "offset", meta)
        for tp, meta in committed.items()
        if tp.topic == topic
    }
    if got != expected:
        fail(f"committed offsets {got}, expected {expected}")
    admin.close()
    print(f"3 members, 2 partitions each, {count} messages read once, offsets committed")


if __name__ == "__main__":
    main()
