//! A consumer of more partitions than one glommio task can be referenced
//! from. A long-polling fetch waits on the data signal of every partition it
//! lists; registered with each of them, its task's waker was cloned once
//! per partition, and glommio counts a task's references in 16 bits: a
//! consumer of 50,000 partitions of one shard (in a 100,000-partition run)
//! made that shard panic, and the broker stopped answering.

mod common;

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use common::{produce_all, Record, TestBroker};

const TOPIC: &str = "wide";
/// More than the 32,767 references a glommio task may have, on one shard.
const PARTITIONS: i32 = 33_000;
/// The consumer's long poll: the broker waits this long for data.
const FETCH_WAIT_MS: &str = "1000";
/// Long enough for several long polls over every partition to be parked.
const PARKED_FOR: Duration = Duration::from_secs(3);
const ARRIVAL_DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);

#[test]
fn a_fetch_long_polling_33000_partitions_of_one_shard_is_woken_by_a_write() {
    let broker = TestBroker::start_with(&["--shards", "1"]);
    broker.create_topic(TOPIC, PARTITIONS);
    let consumer: BaseConsumer = broker.consumer(&[("fetch.wait.max.ms", FETCH_WAIT_MS)]);
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment
            // From offset 0, not the end: librdkafka looks each end up with
            // a request of its own, and may find it after the write below.
            .add_partition_offset(TOPIC, partition, Offset::Offset(0))
            .expect("a partition to assign");
    }
    consumer.assign(&assignment).expect("assign");
    let parked_until = Instant::now() + PARKED_FOR;
    while Instant::now() < parked_until {
        if let Some(message) = consumer.poll(POLL) {
            let message = message.expect("no error while nothing is written");
            panic!(
                "a record nobody wrote, at partition {}",
                message.partition()
            );
        }
    }
    let last = PARTITIONS - 1;
    let written = produce_all(
        &broker,
        TOPIC,
        &[],
        &[Record::with_value(last, b"wake".to_vec())],
    );
    assert_eq!(written, [(last, 0)]);
    let deadline = Instant::now() + ARRIVAL_DEADLINE;
    loop {
        assert!(
            Instant::now() < deadline,
            "the record written to partition {last} did not reach the consumer within {ARRIVAL_DEADLINE:?}"
        );
        let Some(message) = consumer.poll(POLL) else {
            continue;
        };
        let message = message.expect("a record");
        assert_eq!((message.partition(), message.offset()), (last, 0));
        assert_eq!(message.payload(), Some(&b"wake"[..]));
        break;
    }
}
