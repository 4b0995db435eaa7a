#!/usr/bin/env python3
"""A confluent-kafka consumer group of three with the KIP-848 consumer
protocol (group.protocol=consumer) against a running Sluice broker.

usage: groups_confluent.py BOOTSTRAP TOPIC COUNT

Creates TOPIC with 6 partitions, starts three Consumers (one thread each)
in one group with subscribe(), waits until the broker's assignor has given
each exactly 2 partitions and together all 6, then produces COUNT messages.
Every message must be read exactly once, each member committing
synchronously after what it processed; afterwards the group's committed
offsets must be the end of every partition.

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
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
        future.result(timeout=30)
    group = f"confluent-consumer-group-{uuid.uuid4().hex[:8]}"

    stop = threading.Event()
    lock = threading.Lock()
    read = []  # (member, partition, offset, value)
    assignments = [set() for _ in range(MEMBERS)]
    errors = []

    def member(index):
        try:
            consumer = Consumer(
                {
                    "bootstrap.servers": bootstrap,
                    "group.id": group,
                    "group.protocol": "consumer",
                    "client.id": f"member-{index}",
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                }
            )
            consumer.subscribe([topic])
            while not stop.is_set():
                messages = consumer.consume(num_messages=500, timeout=0.2)
                processed = []
                for message in messages:
                    if message.error():
                        continue
                    processed.append(message)
                with lock:
                    for message in processed:
                        read.append((index, message.partition(), message.offset(), message.value()))
                if processed:
                    # Synchronous commit of what was just processed.
                    consumer.commit(asynchronous=False)
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
        return [len(a) for a in owned] == [2] * MEMBERS and union == set(range(PARTITIONS)), owned

    deadline = time.time() + TIMEOUT_S
    while True:
        ok, owned = split()
        if ok:
            break
        if errors or time.time() > deadline:
            stop.set()
            fail(f"no 2/2/2 split: assignments {owned}, errors {errors}")
        time.sleep(0.2)

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(count):
        producer.produce(topic, value=f"m-{i}".encode(), partition=i % PARTITIONS)
        producer.poll(0)
    if producer.flush(30) != 0:
        fail("not every message was delivered")

    while True:
        with lock:
            done = len(read) >= count
        if done:
            break
        if errors or time.time() > deadline:
            stop.set()
            fail(f"read {len(read)} of {count}; errors {errors}")
        time.sleep(0.2)
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

    expected = {p: len([i for i in range(count) if i % PARTITIONS == p]) for p in range(PARTITIONS)}
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    committed = probe.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=30)
    probe.close()
    got = {tp.partition: tp.offset for tp in committed}
    if got != expected:
        fail(f"committed offsets {got}, expected {expected}")
    print(f"3 consumer-protocol members, 2 partitions each, {count} messages read once")


if __name__ == "__main__":
    main()
