#!/usr/bin/env python3
"""IncrementalAlterConfigs' APPEND and SUBTRACT on the list config
cleanup.policy, through confluent-kafka's AdminClient (librdkafka's
rd_kafka_IncrementalAlterConfigs), against a running Sluice broker.

usage: list_configs.py BOOTSTRAP TOPIC

Creates TOPIC, then checks, reading the value back with describe_configs
after each step:
- APPEND compact to a topic without its own value starts from Kafka's
  default: delete,compact;
- SUBTRACT delete leaves compact; APPEND of an item already there changes
  nothing;
- SUBTRACT of the last item (an empty list), APPEND of a word cleanup.policy
  does not know, and APPEND to retention.ms (not a list) are refused with
  INVALID_CONFIG and change nothing.

Exits 0 on success, 1 with a reason otherwise.
"""

import sys

TIMEOUT_S = 30
POLICY = "cleanup.policy"


def fail(reason):
    print(reason)
    sys.exit(1)


def main():
    if len(sys.argv) != 3:
        fail(__doc__)
    bootstrap, topic = sys.argv[1], sys.argv[2]
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import (
        AdminClient,
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        NewTopic,
        ResourceType,
    )

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        future.result(timeout=TIMEOUT_S)

    def alter(name, value, operation):
        entry = ConfigEntry(name, value, incremental_operation=operation)
        resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
        for future in admin.incremental_alter_configs([resource]).values():
            future.result(timeout=TIMEOUT_S)

    def policy():
        resource = ConfigResource(ResourceType.TOPIC, topic)
        for future in admin.describe_configs([resource]).values():
            return future.result(timeout=TIMEOUT_S)[POLICY].value
        fail("describe_configs answered nothing")

    def expect(step, wanted):
        got = policy()
        if got != wanted:
            fail(f"after {step}: {POLICY} is {got!r}, expected {wanted!r}")

    expect("creation", "delete")
    alter(POLICY, "compact", AlterConfigOpType.APPEND)
    expect("APPEND compact", "delete,compact")
    alter(POLICY, "delete", AlterConfigOpType.SUBTRACT)
    expect("SUBTRACT delete", "compact")
    alter(POLICY, "compact", AlterConfigOpType.APPEND)
    expect("APPEND compact again", "compact")

    for name, value, operation in [
        (POLICY, "compact", AlterConfigOpType.SUBTRACT),
        (POLICY, "shred", AlterConfigOpType.APPEND),
        ("retention.ms", "1000", AlterConfigOpType.APPEND),
    ]:
        step = f"{operation.name} {name}={value}"
        try:
            alter(name, value, operation)
        except KafkaException as error:
            code = error.args[0].code()
            if code != KafkaError.INVALID_CONFIG:
                fail(f"{step}: refused with {error}, expected INVALID_CONFIG")
        else:
            fail(f"{step}: accepted, expected INVALID_CONFIG")
        expect(step, "compact")
    print("list configs: ok")


if __name__ == "__main__":
    main()
