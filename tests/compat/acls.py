"""ACLs (CreateAcls, DescribeAcls, DeleteAcls and the checks of every API a
client uses) with confluent-kafka against a SASL_PLAINTEXT broker started
with `--authorizer acl` and `admin` as its super user.

usage: acls.py matrix|after-restart BOOTSTRAP ADMIN_PASSWORD

matrix: admin creates the users alice, bob and carol (SCRAM-SHA-512). Each
operation of the matrix (produce, read, group read, transactional produce,
metadata, create/delete topic, configs, partitions, records,
groups, ACLs; ListOffsets is not a row: librdkafka asks
Metadata first and stops at its refusal) gets its own resources and runs three ways:
bob has no ACL (must be refused), alice has exactly the ACLs it needs (must
succeed), carol has those ACLs and a DENY of the first one (must be
refused). Prints the counts and fails unless there are 0 unauthorized
successes and 0 authorized failures. Then DescribeAcls filters and
DeleteAcls are checked, and a wrong password does not log in.

after-restart: the ACLs survived a restart: alice still produces to the
topic of the produce row, bob still may not.

Exits non-zero with a message on the first check that fails.
"""

import sys
import time
import uuid

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

TIMEOUT_S = 30
# How long a refused client is given to see its refusal.
REFUSAL_WAIT_S = 15
PASSWORD = "secret-%s"

mode, bootstrap, admin_password = sys.argv[1:4]

AUTH_ERRORS = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
}


class Refused(Exception):
    """The broker answered with an authorization error."""


def fail(message):
    print(f"FAILED: {message}")
    sys.exit(1)


def settings(user, password=None):
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": password if password is not None else PASSWORD % user,
    }


# One admin client per user, kept: a client dropped while its request is
# in flight fails the request with _DESTROY.
ADMINS = {}


def admin_of(user):
    if user not in ADMINS:
        ADMINS[user] = AdminClient(admin_config(user))
    return ADMINS[user]


def check_error(error):
    """Raises Refused for an authorization error, KafkaException else."""
    if error is None:
        return
    if error.code() in AUTH_ERRORS:
        raise Refused(error.str())
    raise KafkaException(error)


def wait(future):
    try:
        return future.result(timeout=TIMEOUT_S)
    except KafkaException as exception:
        check_error(exception.args[0])
        raise


def admin_config(user):
    return settings("admin", admin_password) if user == "admin" else settings(user)


# ---- the operations ------------------------------------------------------


def produce(user, topic, extra=None):
    config = dict(admin_config(user), **{"acks": "all", "message.timeout.ms": 10000})
    config.update(extra or {})
    producer = Producer(config)
    outcome = []
    producer.produce(topic, b"value", on_delivery=lambda err, msg: outcome.append(err))
    producer.flush(REFUSAL_WAIT_S)
    if not outcome:
        fail(f"{user}: no delivery report for {topic}")
    check_error(outcome[0])


def read(user, topic, group=None):
    """Assigned (group None) or subscribed read of the one record admin put
    in `topic`."""
    config = dict(
        admin_config(user),
        **{
            "group.id": group or f"unused-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        },
    )
    consumer = Consumer(config)
    try:
        if group is None:
            consumer.assign([TopicPartition(topic, 0, 0)])
        else:
            consumer.subscribe([topic])
        deadline = time.monotonic() + REFUSAL_WAIT_S
        while time.monotonic() < deadline:
            message = consumer.poll(1)
            if message is None:
                continue
            error = message.error()
            # An assigned reader needs a group.id (confluent-kafka insists)
            # but no group: the refusal of its coordinator lookup is not
            # the point of the row.
            if (
                group is None
                and error is not None
                and error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED
            ):
                continue
            check_error(error)
            if group is not None:
                consumer.commit(message=message, asynchronous=False)
            return
        if group is None:
            # librdkafka does not hand an assigned reader the Metadata
            # refusal of its topic (it logs "Topic authorization failed" and
            # keeps asking), so it just reads nothing; the allowed row reads
            # the record through the same path.
            raise Refused(f"read nothing from {topic} in {REFUSAL_WAIT_S} s")
        fail(f"{user}: read nothing from {topic} in {REFUSAL_WAIT_S} s")
    finally:
        consumer.close()


def transactional(user, topic, txn_id):
    config = dict(
        admin_config(user),
        **{"transactional.id": txn_id, "transaction.timeout.ms": 10000},
    )
    producer = Producer(config)
    try:
        producer.init_transactions(REFUSAL_WAIT_S)
        producer.begin_transaction()
        producer.produce(topic, b"in a transaction")
        producer.commit_transaction(REFUSAL_WAIT_S)
    except KafkaException as exception:
        check_error(exception.args[0])
        raise


def metadata(user, topic):
    listed = admin_of(user).list_topics(timeout=TIMEOUT_S).topics
    if topic not in listed:
        raise Refused(f"{topic} is not listed")
    check_error(listed[topic].error)


def create_topic(user, topic):
    futures = admin_of(user).create_topics([NewTopic(topic, 1)])
    wait(futures[topic])


def delete_topic(user, topic):
    wait(admin_of(user).delete_topics([topic])[topic])


def describe_configs(user, topic):
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    wait(admin_of(user).describe_configs([resource])[resource])


def alter_configs(user, topic):
    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    wait(admin_of(user).incremental_alter_configs([resource])[resource])


def create_partitions(user, topic):
    wait(admin_of(user).create_partitions([NewPartitions(topic, 2)])[topic])


def delete_records(user, topic):
    futures = admin_of(user).delete_records([TopicPartition(topic, 0, 1)])
    for future in futures.values():
        result = wait(future)
        check_error(getattr(result, "error", None))


def describe_group(user, group):
    result = wait(admin_of(user).describe_consumer_groups([group])[group])
    check_error(getattr(result, "error", None))


def delete_group(user, group):
    wait(admin_of(user).delete_consumer_groups([group])[group])


def describe_acls(user, _):
    # librdkafka (2.16) drops DescribeAcls's top-level error code and hands
    # back an empty list; by this row admin has made dozens of ACLs, so an
    # empty answer is the refusal (a raw request showed the broker's
    # CLUSTER_AUTHORIZATION_FAILED).
    if not wait(admin_of(user).describe_acls(any_filter())):
        raise Refused("DescribeAcls answered no ACLs")


def create_acl(user, topic):
    binding = AclBinding(
        ResourceType.TOPIC,
        topic,
        ResourcePatternType.LITERAL,
        "User:nobody",
        "*",
        AclOperation.READ,
        AclPermissionType.ALLOW,
    )
    wait(admin_of(user).create_acls([binding])[binding])


def any_filter():
    return AclBindingFilter(
        ResourceType.ANY,
        None,
        ResourcePatternType.ANY,
        None,
        None,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )


# ---- the matrix ----------------------------------------------------------

T = ResourceType.TOPIC
G = ResourceType.GROUP
C = ResourceType.BROKER  # confluent-kafka's name for Kafka's CLUSTER
X = ResourceType.TRANSACTIONAL_ID
CLUSTER = "kafka-cluster"


class Row:
    """One operation: what it needs (resource type, name, operation), how
    to run it for a user, and what admin prepares first."""

    def __init__(self, name, needs, run, prepare=None, bob_gets=()):
        self.name = name
        self.needs = needs
        self.run = run
        self.prepare = prepare
        # ACLs bob holds that are not the one the row needs: where
        # librdkafka asks Metadata before the API itself, DESCRIBE lets
        # bob's request reach the API that must refuse it.
        self.bob_gets = bob_gets


def rows():
    def topic(name):
        def make():
            wait(admin_of("admin").create_topics([NewTopic(name, 1)])[name])
            produce("admin", name)

        return make

    def topic_with_group(name, group):
        def make():
            topic(name)()
            read("admin", name, group)

        return make

    result = []
    result.append(Row("produce", [(T, "m-produce", AclOperation.WRITE)], lambda u, s: produce(u, f"m-produce"), topic("m-produce")))
    result.append(Row("assigned read", [(T, "m-read", AclOperation.READ)], lambda u, s: read(u, "m-read"), topic("m-read")))
    result.append(
        Row(
            "group read and commit",
            [(G, "m-group-{s}", AclOperation.READ), (T, "m-group", AclOperation.READ)],
            lambda u, s: read(u, "m-group", f"m-group-{s}"),
            topic("m-group"),
        )
    )
    result.append(
        Row(
            "transactional produce",
            [(X, "m-txn-{s}", AclOperation.WRITE), (T, "m-txn", AclOperation.WRITE)],
            lambda u, s: transactional(u, "m-txn", f"m-txn-{s}"),
            topic("m-txn"),
        )
    )
    result.append(Row("metadata", [(T, "m-meta", AclOperation.DESCRIBE)], lambda u, s: metadata(u, "m-meta"), topic("m-meta")))
    result.append(Row("create topic", [(T, "m-create-{s}", AclOperation.CREATE)], lambda u, s: create_topic(u, f"m-create-{s}")))
    result.append(
        Row(
            "delete topic",
            [(T, "m-delete-{s}", AclOperation.DELETE)],
            lambda u, s: delete_topic(u, f"m-delete-{s}"),
            lambda: [topic(f"m-delete-{s}")() for s in ("bob", "alice", "carol")],
        )
    )
    result.append(Row("describe configs", [(T, "m-dconf", AclOperation.DESCRIBE_CONFIGS)], lambda u, s: describe_configs(u, "m-dconf"), topic("m-dconf")))
    result.append(Row("alter configs", [(T, "m-aconf", AclOperation.ALTER_CONFIGS)], lambda u, s: alter_configs(u, "m-aconf"), topic("m-aconf")))
    result.append(
        Row(
            "create partitions",
            [(T, "m-parts-{s}", AclOperation.ALTER)],
            lambda u, s: create_partitions(u, f"m-parts-{s}"),
            lambda: [topic(f"m-parts-{s}")() for s in ("bob", "alice", "carol")],
        )
    )
    result.append(
        Row(
            "delete records",
            [(T, "m-records", AclOperation.DELETE)],
            lambda u, s: delete_records(u, "m-records"),
            topic("m-records"),
            bob_gets=[(T, "m-records", AclOperation.DESCRIBE)],
        )
    )
    result.append(
        Row(
            "describe group",
            [(G, "m-dgroup", AclOperation.DESCRIBE)],
            lambda u, s: describe_group(u, "m-dgroup"),
            topic_with_group("m-dgroup-topic", "m-dgroup"),
        )
    )
    result.append(
        Row(
            "delete group",
            [(G, "m-xgroup-{s}", AclOperation.DELETE)],
            lambda u, s: delete_group(u, f"m-xgroup-{s}"),
            lambda: [topic_with_group(f"m-xgroup-topic-{s}", f"m-xgroup-{s}")() for s in ("bob", "alice", "carol")],
        )
    )
    result.append(Row("describe ACLs", [(C, CLUSTER, AclOperation.DESCRIBE)], describe_acls))
    result.append(Row("create ACLs", [(C, CLUSTER, AclOperation.ALTER)], lambda u, s: create_acl(u, f"m-acl-{s}")))
    # DescribeUserScramCredentials is not a row: confluent-kafka 2.16 dies
    # of a segmentation fault on its refusal (a top-level
    # CLUSTER_AUTHORIZATION_FAILED and no results, as Kafka answers).
    return result


def binding(resource_type, name, user, operation, permission):
    return AclBinding(
        resource_type,
        name,
        ResourcePatternType.LITERAL,
        f"User:{user}",
        "*",
        operation,
        permission,
    )


def grant(bindings):
    if not bindings:
        return
    futures = admin_of("admin").create_acls(bindings)
    for future in futures.values():
        wait(future)


def attempt(row, user):
    """True when the operation succeeded, False when it was refused."""
    try:
        row.run(user, user)
        return True
    except Refused:
        return False


def create_users():
    admin = admin_of("admin")
    upsertions = [
        UserScramCredentialUpsertion(
            user,
            ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096),
            (PASSWORD % user).encode(),
        )
        for user in ("alice", "bob", "carol")
    ]
    for future in admin.alter_user_scram_credentials(upsertions).values():
        future.result(timeout=TIMEOUT_S)


def matrix():
    create_users()
    unauthorized_successes = []
    authorized_failures = []
    cluster_rows = []
    for row in rows():
        if row.prepare is not None:
            row.prepare()
        for user in ("alice", "carol"):
            bindings = [
                binding(kind, name.format(s=user), user, operation, AclPermissionType.ALLOW)
                for kind, name, operation in row.needs
            ]
            if user == "carol":
                kind, name, operation = row.needs[0]
                bindings.append(
                    binding(kind, name.format(s=user), user, operation, AclPermissionType.DENY)
                )
            grant(bindings)
        grant(
            [
                binding(kind, name, "bob", operation, AclPermissionType.ALLOW)
                for kind, name, operation in row.bob_gets
            ]
        )
        # Cluster ACLs outlive their row: the rows after them run with
        # alice and carol holding them, which none of those rows needs.
        for user, expected in (("bob", False), ("alice", True), ("carol", False)):
            succeeded = attempt(row, user)
            print(f"  {row.name:24} {user:6} {'allowed' if succeeded else 'refused'}")
            if succeeded and not expected:
                unauthorized_successes.append((row.name, user))
            if expected and not succeeded:
                authorized_failures.append((row.name, user))
        if any(kind == C for kind, _, _ in row.needs):
            cluster_rows.append(row.name)
    count = len(rows())
    print(
        f"{count} operations x 3 principals: {len(unauthorized_successes)} unauthorized "
        f"successes, {len(authorized_failures)} authorized failures"
    )
    if unauthorized_successes or authorized_failures:
        fail(f"unauthorized successes {unauthorized_successes}, authorized failures {authorized_failures}")

    admin = admin_of("admin")
    everything = wait(admin.describe_acls(any_filter()))
    alice_write = AclBindingFilter(
        ResourceType.TOPIC,
        "m-produce",
        ResourcePatternType.LITERAL,
        "User:alice",
        None,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    found = wait(admin.describe_acls(alice_write))
    if len(found) != 1 or found[0].operation != AclOperation.WRITE:
        fail(f"DescribeAcls for alice on m-produce found {found}")
    matching = AclBindingFilter(
        ResourceType.TOPIC,
        "m-produce",
        ResourcePatternType.MATCH,
        None,
        None,
        AclOperation.ANY,
        AclPermissionType.DENY,
    )
    denied = wait(admin.describe_acls(matching))
    if [acl.principal for acl in denied] != ["User:carol"]:
        fail(f"a MATCH filter for the DENY ACLs of m-produce found {denied}")
    carol_filter = AclBindingFilter(
        ResourceType.ANY,
        None,
        ResourcePatternType.ANY,
        "User:carol",
        None,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    removed = wait(admin.delete_acls([carol_filter])[carol_filter])
    left = wait(admin.describe_acls(any_filter()))
    if not removed or len(left) != len(everything) - len(removed):
        fail(f"DeleteAcls removed {len(removed)} of {len(everything)}, {len(left)} left")
    if any(acl.principal == "User:carol" for acl in left):
        fail("carol's ACLs are still there after DeleteAcls")
    print(f"DescribeAcls and DeleteAcls: {len(everything)} ACLs, {len(removed)} of carol's removed")

    # A prefixed ALLOW for bob on "pre-" topics opens exactly those.
    grant(
        [
            AclBinding(
                ResourceType.TOPIC,
                "pre-",
                ResourcePatternType.PREFIXED,
                "User:bob",
                "*",
                AclOperation.WRITE,
                AclPermissionType.ALLOW,
            )
        ]
    )
    for name in ("pre-a", "other-a"):
        wait(admin.create_topics([NewTopic(name, 1)])[name])
    try:
        produce("bob", "pre-a")
    except Refused as refused:
        fail(f"bob was refused a prefixed topic: {refused}")
    try:
        produce("bob", "other-a")
        fail("bob wrote to a topic outside his prefix")
    except Refused:
        pass

    wrong = Producer(dict(settings("alice", "not-the-password"), **{"message.timeout.ms": 5000}))
    errors = []
    wrong.produce("m-produce", b"x", on_delivery=lambda err, msg: errors.append(err))
    wrong.flush(REFUSAL_WAIT_S)
    if not errors or errors[0] is None:
        fail("a wrong password delivered a record")
    print("prefixed ACLs and a wrong password: as expected")


def authorized_operations():
    """KIP-430: what a client may do on a topic, group and the cluster, as
    DescribeTopics, DescribeConsumerGroups and DescribeCluster report it."""
    topic = f"ops-{uuid.uuid4().hex[:8]}"
    group = f"ops-group-{uuid.uuid4().hex[:8]}"
    wait(admin_of("admin").create_topics([NewTopic(topic, 1, 1)])[topic])
    grant(
        [
            binding(ResourceType.TOPIC, topic, "alice", AclOperation.READ, AclPermissionType.ALLOW),
            binding(ResourceType.TOPIC, topic, "alice", AclOperation.DESCRIBE, AclPermissionType.ALLOW),
            binding(ResourceType.GROUP, group, "alice", AclOperation.READ, AclPermissionType.ALLOW),
        ]
    )
    # A member reads and commits, so that the group exists when described.
    produce("admin", topic)
    read("alice", topic, group)

    def topic_ops(user):
        described = admin_of(user).describe_topics(
            TopicCollection([topic]), include_authorized_operations=True
        )
        return set(wait(described[topic]).authorized_operations or [])

    def group_ops(user):
        described = admin_of(user).describe_consumer_groups(
            [group], include_authorized_operations=True
        )
        return set(wait(described[group]).authorized_operations or [])

    def cluster_ops(user):
        described = admin_of(user).describe_cluster(include_authorized_operations=True)
        return set(wait(described).authorized_operations or [])

    every_topic_operation = {
        AclOperation.READ,
        AclOperation.WRITE,
        AclOperation.CREATE,
        AclOperation.DELETE,
        AclOperation.ALTER,
        AclOperation.DESCRIBE,
        AclOperation.DESCRIBE_CONFIGS,
        AclOperation.ALTER_CONFIGS,
    }
    checks = [
        ("alice on the topic", topic_ops("alice"), {AclOperation.READ, AclOperation.DESCRIBE}),
        ("admin on the topic", topic_ops("admin"), every_topic_operation),
        # READ implies DESCRIBE, as in Kafka.
        ("alice on the group", group_ops("alice"), {AclOperation.READ, AclOperation.DESCRIBE}),
        ("admin on the group", group_ops("admin"), {AclOperation.READ, AclOperation.DESCRIBE, AclOperation.DELETE}),
        # bob has no ACL on the cluster (alice has ALTER from the matrix).
        ("bob on the cluster", cluster_ops("bob"), set()),
        (
            "admin on the cluster",
            cluster_ops("admin"),
            {
                AclOperation.CREATE,
                AclOperation.ALTER,
                AclOperation.DESCRIBE,
                AclOperation.CLUSTER_ACTION,
                AclOperation.DESCRIBE_CONFIGS,
                AclOperation.ALTER_CONFIGS,
                AclOperation.IDEMPOTENT_WRITE,
            },
        ),
    ]
    for what, got, expected in checks:
        if got != expected:
            fail(f"authorized operations of {what}: {sorted(map(str, got))}, expected {sorted(map(str, expected))}")
    print(f"authorized operations: {len(checks)} checks as Kafka answers them")


def after_restart():
    try:
        produce("alice", "m-produce")
    except Refused as refused:
        fail(f"alice lost her ACL in the restart: {refused}")
    try:
        produce("bob", "m-produce")
        fail("bob produced after the restart")
    except Refused:
        pass
    acls = wait(admin_of("admin").describe_acls(any_filter()))
    print(f"after the restart: {len(acls)} ACLs, alice writes, bob is refused")


if mode == "matrix":
    matrix()
    authorized_operations()
elif mode == "after-restart":
    after_restart()
else:
    fail(f"unknown mode {mode}")
print("OK")
