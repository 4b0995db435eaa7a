#!/usr/bin/env bash
# Compatibility smoke test: the same scenario (create a topic, produce N
# messages, consume them back, compare) with kcat, confluent-kafka (Python,
# librdkafka inside) and kafka-python (pure Python) against a real Sluice
# broker on 127.0.0.1.
#
# usage: tests/compat/run.sh [PATH/TO/sluice]
#   Without an argument, builds the debug binary (cargo build -p sluice) and
#   uses target/debug/sluice. COMPAT_MESSAGES sets N (default 2000).
#   Installs what it needs: kcat (apt-get) and, in a virtualenv under
#   ${XDG_CACHE_HOME:-~/.cache}/sluice-compat-venv, confluent-kafka and
#   kafka-python (pip).
# Prints one PASS/FAIL line per check and finally "N passed, M failed";
# exits non-zero if anything failed.

set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
messages="${COMPAT_MESSAGES:-2000}"
passed=0
failed=0

say() { printf '%s\n' "$*" >&2; }

if [[ $# -ge 1 ]]; then
    binary="$1"
else
    say "building the broker (cargo build -p sluice)"
    (cd "$root" && cargo build -p sluice) || { say "build failed"; echo "0 passed, 1 failed"; exit 1; }
    binary="$root/target/debug/sluice"
fi
if [[ ! -x "$binary" ]]; then
    say "no broker binary at $binary"
    echo "0 passed, 1 failed"
    exit 1
fi

# ---- tools -------------------------------------------------------------
if ! command -v kcat >/dev/null 2>&1; then
    say "installing kcat"
    sudo_cmd=""
    [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq kcat >/dev/null || say "could not install kcat"
fi
venv="${XDG_CACHE_HOME:-$HOME/.cache}/sluice-compat-venv"
if [[ ! -x "$venv/bin/python" ]]; then
    say "creating $venv"
    python3 -m venv "$venv" || say "could not create a virtualenv"
fi
python="$venv/bin/python"
if ! "$python" -c 'import confluent_kafka, kafka' >/dev/null 2>&1; then
    say "installing confluent-kafka and kafka-python"
    "$python" -m pip install -q --disable-pip-version-check confluent-kafka kafka-python >&2 \
        || say "could not install the Python clients"
fi

# ---- broker ------------------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/sluice-compat.XXXXXX")"
broker_pid=""
stop_broker() {
    [[ -z "$broker_pid" ]] && return
    kill -TERM "$broker_pid" 2>/dev/null
    for _ in $(seq 1 100); do
        kill -0 "$broker_pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$broker_pid" 2>/dev/null; then
        say "broker did not stop on SIGTERM; killing it"
        kill -KILL "$broker_pid" 2>/dev/null
    fi
    wait "$broker_pid" 2>/dev/null
    broker_pid=""
}
cleanup() {
    stop_broker
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_broker DATA_DIR [FLAG ...]: starts a broker on a free port, sets
# broker_pid and bootstrap; returns non-zero if it did not start.
start_broker() {
    local data="$1"
    shift
    "$binary" --data-dir "$data" --listen 127.0.0.1:0 --shards 2 --pin-shards false "$@" \
        >"$work/stdout" 2>>"$work/broker.log" &
    broker_pid=$!
    bootstrap=""
    for _ in $(seq 1 600); do
        bootstrap="$(sed -n 's/^sluice listening on //p' "$work/stdout" | head -n1)"
        [[ -n "$bootstrap" ]] && break
        kill -0 "$broker_pid" 2>/dev/null || break
        sleep 0.1
    done
    if [[ -z "$bootstrap" ]]; then
        say "the broker did not start:"
        tail -n 20 "$work/broker.log" >&2
        return 1
    fi
    say "broker at $bootstrap (pid $broker_pid)"
}
start_broker "$work/data" || { echo "0 passed, 1 failed"; exit 1; }

check() {
    local name="$1"
    shift
    local output
    if output="$("$@" 2>&1)"; then
        passed=$((passed + 1))
        echo "PASS $name"
    else
        failed=$((failed + 1))
        echo "FAIL $name"
        printf '%s\n' "$output" | tail -n 20 | sed 's/^/    /'
    fi
}

# kcat: auto-created topic, keyed lines, one codec per run; reads back with
# -e (exit at the end) and compares line for line (one partition: in order).
kcat_roundtrip() {
    local topic="$1" codec="$2"
    command -v kcat >/dev/null 2>&1 || { echo "kcat is not installed"; return 1; }
    seq 1 "$messages" | awk '{ printf "key-%d:value-%d-%s\n", $1 % 13, $1, substr("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 1, $1 % 40) }' \
        >"$work/$topic.sent"
    kcat -b "$bootstrap" -t "$topic" -P -K: -z "$codec" -X acks=all -l "$work/$topic.sent" || return 1
    kcat -b "$bootstrap" -L -t "$topic" | grep -q "topic \"$topic\" with 1 partitions" \
        || { echo "metadata does not list $topic"; return 1; }
    timeout 60 kcat -b "$bootstrap" -t "$topic" -C -e -q -o beginning -f '%k:%s\n' >"$work/$topic.got" \
        || return 1
    if ! cmp -s "$work/$topic.sent" "$work/$topic.got"; then
        echo "read back $(wc -l <"$work/$topic.got") lines, sent $(wc -l <"$work/$topic.sent"); first difference:"
        diff "$work/$topic.sent" "$work/$topic.got" | head -n 5
        return 1
    fi
}

# kcat -G: a balanced (classic-protocol) group consumer of one member reads
# every message of the topic once.
kcat_group() {
    local topic="$1"
    command -v kcat >/dev/null 2>&1 || { echo "kcat is not installed"; return 1; }
    seq 1 "$messages" | sed 's/^/group-/' >"$work/$topic.sent"
    kcat -b "$bootstrap" -t "$topic" -P -X acks=all -l "$work/$topic.sent" || return 1
    timeout 60 kcat -b "$bootstrap" -G "$topic-group" -o beginning -e -q -f '%s\n' "$topic" \
        >"$work/$topic.got" || return 1
    if ! cmp -s <(sort "$work/$topic.sent") <(sort "$work/$topic.got"); then
        echo "kcat -G read $(wc -l <"$work/$topic.got") lines, sent $(wc -l <"$work/$topic.sent")"
        return 1
    fi
}

check "kcat (none)" kcat_roundtrip kcat-none none
check "kcat (snappy)" kcat_roundtrip kcat-snappy snappy
check "kcat (lz4)" kcat_roundtrip kcat-lz4 lz4
check "kcat group (-G)" kcat_group kcat-group
check "confluent-kafka" timeout 120 "$python" "$here/smoke.py" confluent "$bootstrap" confluent-topic "$messages"
check "kafka-python" timeout 120 "$python" "$here/smoke.py" kafka-python "$bootstrap" kafka-python-topic "$messages"
check "confluent-kafka admin" timeout 120 "$python" "$here/smoke.py" confluent-admin "$bootstrap" confluent-admin-topic 0
check "kafka-python admin" timeout 120 "$python" "$here/smoke.py" kafka-python-admin "$bootstrap" kafka-python-admin-topic 0
check "confluent-kafka incremental APPEND/SUBTRACT" timeout 120 "$python" "$here/list_configs.py" "$bootstrap" confluent-list-configs
check "kafka-python group of 3" timeout 180 "$python" "$here/groups_kafka_python.py" "$bootstrap" kafka-python-group-topic "$messages"
check "confluent-kafka group of 3 (group.protocol=consumer)" timeout 180 "$python" "$here/groups_confluent.py" "$bootstrap" confluent-group-topic "$messages"

if ! kill -0 "$broker_pid" 2>/dev/null; then
    failed=$((failed + 1))
    echo "FAIL broker still running at the end"
    tail -n 20 "$work/broker.log" | sed 's/^/    /'
    broker_pid=""
fi
stop_broker
if grep -q ' ERROR ' "$work/broker.log"; then
    say "broker logged errors:"
    grep ' ERROR ' "$work/broker.log" | head -n 10 >&2
fi

# ---- SCRAM users over the protocol (KIP-554) ---------------------------
# A SASL broker whose only user, the super user admin, was created offline;
# confluent-kafka then manages users with Alter/DescribeUserScramCredentials,
# and the changes must survive a restart.
scram_steps() {
    local data="$work/sasl-data" password="admin-secret"
    local flags=(--listener-security-protocol SASL_PLAINTEXT --super-users User:admin)
    printf '%s\n' "$password" | "$binary" user create --data-dir "$data" --user admin >/dev/null \
        || return 1
    start_broker "$data" "${flags[@]}" || return 1
    timeout 180 "$python" "$here/scram.py" alter "$bootstrap" "$password" scram-topic || return 1
    stop_broker
    start_broker "$data" "${flags[@]}" || return 1
    timeout 120 "$python" "$here/scram.py" after-restart "$bootstrap" "$password" scram-topic
}
# `check` runs it in a subshell, so the broker it starts is stopped there.
scram_users() {
    scram_steps
    local status=$?
    stop_broker
    return $status
}
check "confluent-kafka manages SCRAM users (KIP-554)" scram_users

# ---- ACLs --------------------------------------------------------------
# A SASL broker with the ACL authorizer: confluent-kafka runs the matrix of
# acls.py (each operation refused without its ACL, allowed with it, refused
# with a DENY beside it), and the ACLs must survive a restart.
acl_steps() {
    local data="$work/acl-data" password="admin-secret"
    local flags=(--listener-security-protocol SASL_PLAINTEXT --super-users User:admin --authorizer acl)
    printf '%s\n' "$password" | "$binary" user create --data-dir "$data" --user admin >/dev/null \
        || return 1
    start_broker "$data" "${flags[@]}" || return 1
    timeout 600 "$python" "$here/acls.py" matrix "$bootstrap" "$password" || return 1
    stop_broker
    start_broker "$data" "${flags[@]}" || return 1
    timeout 120 "$python" "$here/acls.py" after-restart "$bootstrap" "$password"
}
acl_matrix() {
    acl_steps
    local status=$?
    stop_broker
    return $status
}
check "confluent-kafka: every API refused without its ACL, allowed with it, refused under a DENY" acl_matrix

# ---- TLS ---------------------------------------------------------------
# Certificates made now with openssl: a CA, the broker's certificate for
# 127.0.0.1, and a client certificate. A SASL_SSL broker is then used by
# kcat, confluent-kafka and kafka-python with PLAIN, SCRAM-SHA-256 and
# SCRAM-SHA-512, then the same on SASL_PLAINTEXT; an SSL broker that
# requires client certificates by each of them with the client certificate.
make_pki() {
    local pki="$1"
    mkdir -p "$pki" && cd "$pki" || return 1
    local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    openssl req -x509 "${ec[@]}" -days 2 -subj /CN=compat-ca -keyout ca.key -out ca.pem 2>/dev/null || return 1
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >san.ext
    for name in server client; do
        openssl req -new "${ec[@]}" -subj "/CN=$name" -keyout "$name.key" -out "$name.csr" 2>/dev/null \
            || return 1
        openssl x509 -req -days 2 -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
            -extfile san.ext -out "$name.pem" 2>/dev/null || return 1
    done
    cat server.key server.pem >server.keystore
}
kcat_tls() {
    local topic="$1"
    shift
    command -v kcat >/dev/null 2>&1 || { echo "kcat is not installed"; return 1; }
    seq 1 "$messages" | sed 's/^/tls-/' >"$work/$topic.sent"
    kcat -b "$bootstrap" "$@" -t "$topic" -P -X acks=all -l "$work/$topic.sent" || return 1
    timeout 60 kcat -b "$bootstrap" "$@" -t "$topic" -C -e -q -o beginning -f '%s\n' \
        >"$work/$topic.got" || return 1
    cmp -s "$work/$topic.sent" "$work/$topic.got" \
        || { echo "kcat over TLS read $(wc -l <"$work/$topic.got") lines, sent $messages"; return 1; }
}
tls_steps() {
    local pki="$work/pki" data="$work/tls-data" password="admin-secret"
    (make_pki "$pki") || { echo "openssl could not make the certificates"; return 1; }
    printf '%s\n' "$password" | "$binary" user create --data-dir "$data" --user admin >/dev/null \
        || return 1
    start_broker "$data" --listener-security-protocol SASL_SSL \
        --ssl-keystore-location "$pki/server.keystore" || return 1
    local mechanism
    for mechanism in PLAIN SCRAM-SHA-256 SCRAM-SHA-512; do
        timeout 120 "$python" "$here/tls.py" confluent "$bootstrap" "$pki" SASL_SSL "$mechanism" \
            "$password" "confluent-sasl-ssl-$mechanism" "$messages" || return 1
        timeout 120 "$python" "$here/tls.py" kafka-python "$bootstrap" "$pki" SASL_SSL "$mechanism" \
            "$password" "kafka-python-sasl-ssl-$mechanism" "$messages" || return 1
        kcat_tls "kcat-sasl-ssl-$mechanism" -X security.protocol=SASL_SSL -X "ssl.ca.location=$pki/ca.pem" \
            -X "sasl.mechanisms=$mechanism" -X sasl.username=admin -X "sasl.password=$password" || return 1
    done
    stop_broker
    # The same users over SASL_PLAINTEXT.
    start_broker "$data" --listener-security-protocol SASL_PLAINTEXT || return 1
    for mechanism in PLAIN SCRAM-SHA-256 SCRAM-SHA-512; do
        timeout 120 "$python" "$here/tls.py" confluent "$bootstrap" "$pki" SASL_PLAINTEXT "$mechanism" \
            "$password" "confluent-sasl-plaintext-$mechanism" "$messages" || return 1
        timeout 120 "$python" "$here/tls.py" kafka-python "$bootstrap" "$pki" SASL_PLAINTEXT \
            "$mechanism" "$password" "kafka-python-sasl-plaintext-$mechanism" "$messages" || return 1
        kcat_tls "kcat-sasl-plaintext-$mechanism" -X security.protocol=SASL_PLAINTEXT \
            -X "sasl.mechanisms=$mechanism" -X sasl.username=admin -X "sasl.password=$password" || return 1
    done
    stop_broker
    start_broker "$work/ssl-data" --listener-security-protocol SSL --ssl-client-auth required \
        --ssl-keystore-location "$pki/server.keystore" --ssl-truststore-location "$pki/ca.pem" || return 1
    timeout 120 "$python" "$here/tls.py" confluent "$bootstrap" "$pki" SSL - - confluent-ssl "$messages" \
        || return 1
    timeout 120 "$python" "$here/tls.py" kafka-python "$bootstrap" "$pki" SSL - - kafka-python-ssl \
        "$messages" || return 1
    kcat_tls kcat-ssl -X security.protocol=SSL -X "ssl.ca.location=$pki/ca.pem" \
        -X "ssl.certificate.location=$pki/client.pem" -X "ssl.key.location=$pki/client.key" || return 1
    # Without its certificate the same client is refused.
    if timeout 30 kcat -b "$bootstrap" -X security.protocol=SSL -X "ssl.ca.location=$pki/ca.pem" \
        -L -m 5 >/dev/null 2>&1; then
        echo "a client without a certificate was served"
        return 1
    fi
}
tls_clients() {
    tls_steps
    local status=$?
    stop_broker
    return $status
}
check "kcat, confluent-kafka and kafka-python over SASL_SSL and SASL_PLAINTEXT (3 mechanisms each) and SSL (client certificates)" tls_clients

# ---- a three-broker cluster --------------------------------------------
# Each client must see three brokers and a 12-partition, 3-replica topic
# spread evenly (4 leaders and 12 replicas per broker), and produce and read
# through the partitions' leaders. The cluster comes from perf/cluster-lib.sh
# (free ports, one data directory per node under $work).
SLUICE="$binary"
WORK="$work/cluster"
LOG_DIR="$work"
NODES=3
# shellcheck source=perf/cluster-lib.sh
source "$root/perf/cluster-lib.sh"
cleanup() {
    stop_broker
    stop_cluster
    rm -rf "$work"
}
require_jq
mkdir -p "$WORK"
start_cluster >&2
cluster_bootstrap=""
for port in "${kafka_ports[@]}"; do
    cluster_bootstrap+="${cluster_bootstrap:+,}127.0.0.1:$port"
done

# kcat cannot create a topic with replicas; the admin CLI does, and kcat -L
# must then list three brokers and every partition's leader, replicas and
# ISR (lines "partition N, leader L, replicas: 1,2,3, isrs: 1,2,3").
kcat_cluster() {
    local topic=kcat-spread layout
    command -v kcat >/dev/null 2>&1 || { echo "kcat is not installed"; return 1; }
    "$binary" topic create "$topic" --partitions 12 --replication-factor 3 \
        --bootstrap "$BOOTSTRAP" >/dev/null || return 1
    for _ in $(seq 1 300); do
        layout="$(kcat -b "$cluster_bootstrap" -L -t "$topic" 2>/dev/null)"
        awk '
            # A list such as "3,1,2," names brokers 1, 2 and 3 once each.
            function all_three(list,    ids, n, i, seen, count) {
                n = split(list, ids, ",")
                count = 0
                for (i = 1; i <= n; i++) {
                    if (ids[i] ~ /^[123]$/ && !(ids[i] in seen)) { seen[ids[i]] = 1; count++ }
                    else if (ids[i] != "") return 0
                }
                return count == 3
            }
            / brokers:$/ { brokers = $1 }
            /partition [0-9]+, leader/ {
                partitions++
                leader = $4; sub(",", "", leader); leading[leader]++
                if (all_three($6)) replicated++
                if (all_three($8)) in_sync++
            }
            END {
                even = (leading[1] == 4 && leading[2] == 4 && leading[3] == 4)
                exit !(brokers == 3 && partitions == 12 && replicated == 12 && in_sync == 12 && even)
            }' <<<"$layout" && return 0
        sleep 0.2
    done
    echo "kcat -L did not show 3 brokers and 12 partitions x 3 replicas, 4 leaders each:"
    printf '%s\n' "$layout" | head -n 20
    return 1
}

check "kcat sees the cluster" kcat_cluster
check "confluent-kafka sees the cluster" timeout 180 "$python" "$here/cluster.py" confluent "$cluster_bootstrap" confluent-spread "$messages"
check "kafka-python sees the cluster" timeout 180 "$python" "$here/cluster.py" kafka-python "$cluster_bootstrap" kafka-python-spread "$messages"
check_alive
stop_cluster
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
