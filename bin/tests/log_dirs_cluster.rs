//! DescribeLogDirs and DescribeCluster on the wire at every advertised
//! version: the data directory with each partition's size (which grows with
//! what was produced), and this node as broker and controller.

mod common;

use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::{
    ApiKey, DescribeClusterRequest, DescribeClusterResponse, DescribeLogDirsRequest,
    DescribeLogDirsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use common::{produce_all, raw_connect, receive_response, send_request, Record, TestBroker};

const TOPIC: &str = "sized";
const PARTITIONS: i32 = 3;
const MESSAGES: usize = 300;
const VALUE_BYTES: usize = 1000;

#[test]
fn log_dirs_report_sizes_and_cluster_reports_this_node() {
    let broker = TestBroker::start();
    broker.create_topic(TOPIC, PARTITIONS);
    let records: Vec<Record> = (0..MESSAGES)
        .map(|i| Record {
            partition: i as i32 % PARTITIONS,
            offset: -1,
            key: Some(format!("k{i}").into_bytes()),
            value: Some(vec![b'v'; VALUE_BYTES]),
            headers: Vec::new(),
            timestamp: None,
        })
        .collect();
    produce_all(&broker, TOPIC, &[("acks", "all")], &records);
    let mut stream = raw_connect(broker.address());
    let mut correlation_id = 0;
    for version in 1..=4i16 {
        correlation_id += 1;
        let mut request = DescribeLogDirsRequest::default();
        if version % 2 == 0 {
            // Even versions ask for two of the partitions, odd ones for all.
            let mut topic = DescribableLogDirTopic::default();
            topic.topic = TopicName(StrBytes::from_static_str(TOPIC));
            topic.partitions = vec![0, 2];
            request.topics = Some(vec![topic]);
        } else {
            request.topics = None;
        }
        send_request(
            &mut stream,
            ApiKey::DescribeLogDirs,
            version,
            correlation_id,
            &request,
        );
        let response: DescribeLogDirsResponse = receive_response(
            &mut stream,
            ApiKey::DescribeLogDirs,
            version,
            correlation_id,
        );
        assert_eq!(response.results.len(), 1, "one log dir at v{version}");
        let dir = &response.results[0];
        assert_eq!(dir.error_code, 0);
        assert_eq!(
            std::path::Path::new(dir.log_dir.as_str()),
            broker.data_dir().as_path(),
            "the data directory at v{version}"
        );
        if version >= 4 {
            assert!(
                dir.total_bytes > 0 && dir.usable_bytes > 0,
                "disk space at v4"
            );
        }
        let topic = dir
            .topics
            .iter()
            .find(|topic| topic.name.0.as_str() == TOPIC)
            .unwrap_or_else(|| panic!("topic listed at v{version}"));
        let partitions: Vec<i32> = topic.partitions.iter().map(|p| p.partition_index).collect();
        let expected: Vec<i32> = if version % 2 == 0 {
            vec![0, 2]
        } else {
            (0..PARTITIONS).collect()
        };
        assert_eq!(partitions, expected, "partitions at v{version}");
        if version % 2 == 1 {
            let total: i64 = topic.partitions.iter().map(|p| p.partition_size).sum();
            assert!(
                total >= (MESSAGES * VALUE_BYTES) as i64,
                "sizes {total} cover the {} value bytes produced",
                MESSAGES * VALUE_BYTES
            );
            assert!(topic.partitions.iter().all(|p| p.offset_lag == 0));
        }
    }
    for version in 0..=1i16 {
        correlation_id += 1;
        let request = DescribeClusterRequest::default();
        send_request(
            &mut stream,
            ApiKey::DescribeCluster,
            version,
            correlation_id,
            &request,
        );
        let response: DescribeClusterResponse = receive_response(
            &mut stream,
            ApiKey::DescribeCluster,
            version,
            correlation_id,
        );
        assert_eq!(response.error_code, 0);
        assert_eq!(response.brokers.len(), 1);
        assert_eq!(response.brokers[0].port, i32::from(broker.address().port()));
        assert_eq!(response.controller_id, response.brokers[0].broker_id);
        assert!(!response.cluster_id.is_empty());
    }
}
