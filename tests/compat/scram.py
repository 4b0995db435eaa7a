"""SCRAM users managed over the Kafka protocol (KIP-554) with confluent-kafka.

usage: scram.py alter|after-restart BOOTSTRAP ADMIN_PASSWORD TOPIC

The broker listens with SASL_PLAINTEXT, `admin` is its super user (created
offline with `sluice user create`), and this script logs in as admin with
SCRAM-SHA-512.

alter: admin creates bob (SCRAM-SHA-256, 8192 iterations) and carol
(SCRAM-SHA-512); DescribeUserScramCredentials shows exactly those mechanisms
and iteration counts; bob produces and carol consumes N records; PLAIN logs
bob in too (it checks the SCRAM credential); a wrong password and a
deleted credential do not log in; bob, not a super user, may not change
credentials; too few iterations, an unknown user and a duplicate are
refused with Kafka's errors.

after-restart: the changes survived the broker's restart: admin and bob
are there, carol is not, and bob still logs in.

Exits non-zero with a message on the first check that fails.
"""

import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

RECORDS = 100
TIMEOUT_S = 30
# How long a client with bad credentials is given to fail to log in.
LOGIN_WAIT_S = 10

mode, bootstrap, admin_password, topic = sys.argv[1:5]


def fail(message):
    print(f"FAILED: {message}")
    sys.exit(1)


def settings(user, password, mechanism):
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": mechanism,
        "sasl.username": user,
        "sasl.password": password,
    }


def admin_as(user, password, mechanism="SCRAM-SHA-512"):
    return AdminClient(settings(user, password, mechanism))


def alter(admin, alterations):
    """{user: None or KafkaError} for one AlterUserScramCredentials call."""
    futures = admin.alter_user_scram_credentials(alterations, request_timeout=TIMEOUT_S)
    outcome = {}
    for user, future in futures.items():
        try:
            future.result()
            outcome[user] = None
        except KafkaException as error:
            outcome[user] = error.args[0]
    return outcome


def describe(admin, users):
    """{user: [(mechanism, iterations)] or KafkaError}."""
    futures = admin.describe_user_scram_credentials(users, request_timeout=TIMEOUT_S)
    if not isinstance(futures, dict):
        # All users: one future for the whole answer.
        try:
            described = futures.result()
        except KafkaException as error:
            fail(f"describing every user failed: {error}")
        return {
            user: sorted((info.mechanism, info.iterations) for info in d.scram_credential_infos)
            for user, d in described.items()
        }
    outcome = {}
    for user, future in futures.items():
        try:
            d = future.result()
            outcome[user] = sorted(
                (info.mechanism, info.iterations) for info in d.scram_credential_infos
            )
        except KafkaException as error:
            outcome[user] = error.args[0]
    return outcome


def logs_in(user, password, mechanism):
    """Whether a client with these credentials can read the cluster's metadata."""
    errors = []
    config = settings(user, password, mechanism)
    config["error_cb"] = errors.append
    admin = AdminClient(config)
    try:
        admin.list_topics(timeout=LOGIN_WAIT_S)
        return True
    except KafkaException as error:
        # The error callback runs from poll.
        admin.poll(1.0)
        codes = [error.args[0].code()] + [e.code() for e in errors]
        if KafkaError._AUTHENTICATION not in codes:
            fail(f"{user} could not log in, but not for an authentication error: {codes!r}")
        return False


def produce(user, password, mechanism, count, prefix):
    producer = Producer({**settings(user, password, mechanism), "acks": "all"})
    delivered = []

    def on_delivery(error, message):
        if error is not None:
            fail(f"{user} could not produce: {error}")
        delivered.append(message.offset())

    for i in range(count):
        producer.produce(topic, value=f"{prefix}-{i}".encode(), on_delivery=on_delivery)
    if producer.flush(TIMEOUT_S) != 0 or len(delivered) != count:
        fail(f"{user}: {len(delivered)} of {count} records acknowledged")


def consume(user, password, mechanism, count):
    consumer = Consumer(
        {
            **settings(user, password, mechanism),
            "group.id": f"scram-{user}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    values = []
    deadline = time.time() + TIMEOUT_S * 2
    while len(values) < count and time.time() < deadline:
        message = consumer.poll(1.0)
        if message is None:
            continue
        if message.error():
            fail(f"{user} consuming: {message.error()}")
        values.append(message.value().decode())
    consumer.close()
    return values


admin = admin_as("admin", admin_password)
SHA256 = ScramMechanism.SCRAM_SHA_256
SHA512 = ScramMechanism.SCRAM_SHA_512

if mode == "alter":
    outcome = alter(
        admin,
        [
            UserScramCredentialUpsertion("bob", ScramCredentialInfo(SHA256, 8192), b"bob-secret"),
            UserScramCredentialUpsertion("carol", ScramCredentialInfo(SHA512, 4096), b"carol-pw"),
        ],
    )
    if outcome != {"bob": None, "carol": None}:
        fail(f"creating bob and carol: {outcome!r}")
    described = describe(admin, ["bob", "carol", "nobody"])
    if described.get("bob") != [(SHA256, 8192)] or described.get("carol") != [(SHA512, 4096)]:
        fail(f"described: {described}")
    if not isinstance(described.get("nobody"), KafkaError) or (
        described["nobody"].code() != KafkaError.RESOURCE_NOT_FOUND
    ):
        fail(f"an unknown user: {described.get('nobody')}")
    every = describe(admin, None)
    if set(every) != {"admin", "bob", "carol"}:
        fail(f"every user: {sorted(every)}")

    produce("bob", "bob-secret", "SCRAM-SHA-256", RECORDS, "bob")
    produce("bob", "bob-secret", "PLAIN", 1, "plain")
    values = consume("carol", "carol-pw", "SCRAM-SHA-512", RECORDS + 1)
    expected = [f"bob-{i}" for i in range(RECORDS)] + ["plain-0"]
    if values != expected:
        fail(f"carol read {len(values)} records, not bob's {len(expected)} in order")

    if logs_in("bob", "not-bobs-password", "SCRAM-SHA-256"):
        fail("bob logged in with a wrong password")
    if logs_in("bob", "bob-secret", "SCRAM-SHA-512"):
        fail("bob logged in with SCRAM-SHA-512, a mechanism he has no credential for")

    # bob is not a super user: he may neither add users nor look at them.
    bob_admin = admin_as("bob", "bob-secret", "SCRAM-SHA-256")
    outcome = alter(
        bob_admin,
        [UserScramCredentialUpsertion("mallory", ScramCredentialInfo(SHA256, 4096), b"x")],
    )
    error = outcome.get("mallory")
    if not isinstance(error, KafkaError) or error.code() != KafkaError.CLUSTER_AUTHORIZATION_FAILED:
        fail(f"bob adding a user: {outcome}")
    if logs_in("mallory", "x", "SCRAM-SHA-256"):
        fail("mallory, refused, logs in")

    outcome = alter(
        admin,
        [UserScramCredentialUpsertion("dave", ScramCredentialInfo(SHA256, 100), b"dave-pw")],
    )
    error = outcome.get("dave")
    if not isinstance(error, KafkaError) or error.code() != KafkaError.UNACCEPTABLE_CREDENTIAL:
        fail(f"100 iterations: {outcome}")
    outcome = alter(admin, [UserScramCredentialDeletion("nobody", SHA256)])
    error = outcome.get("nobody")
    if not isinstance(error, KafkaError) or error.code() != KafkaError.RESOURCE_NOT_FOUND:
        fail(f"deleting an unknown user's credential: {outcome}")

    outcome = alter(admin, [UserScramCredentialDeletion("carol", SHA512)])
    if outcome != {"carol": None}:
        fail(f"deleting carol: {outcome}")
    if logs_in("carol", "carol-pw", "SCRAM-SHA-512"):
        fail("carol logs in after her credential was deleted")
    print("OK: credentials created, described, used, refused and deleted")
elif mode == "after-restart":
    every = describe(admin, None)
    if every.get("bob") != [(SHA256, 8192)] or "carol" in every or "admin" not in every:
        fail(f"after the restart: {every}")
    produce("bob", "bob-secret", "SCRAM-SHA-256", 1, "again")
    print("OK: the changes survived the restart")
else:
    fail(f"unknown mode {mode}")
