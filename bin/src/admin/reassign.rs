//! `sluice topic reassign`, `sluice topic reassignments` and
//! `sluice cluster rebalance`: partition reassignments (KIP-455) over
//! AlterPartitionReassignments and ListPartitionReassignments.
//!
//! `--wait` polls until the moves are over: none of the partitions is listed
//! as being reassigned, and the bootstrap broker's metadata (which may lag
//! the controller's) shows each partition on its target replicas. It gives
//! up after [`REASSIGNMENT_WAIT_TIMEOUT`], leaving the moves running.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_net::client::admin::{OngoingReassignment, PartitionReassignment};
use sluice_net::client::{Admin, ClientError, KafkaError};

use super::rebalance::{self, CurrentPartition, Plan};
use super::{emit, json_text, node_list, table};

/// How long `--wait` waits for reassignments to finish. Moving a large
/// partition takes as long as copying it, so this is generous; the moves go
/// on after the command gives up.
const REASSIGNMENT_WAIT_TIMEOUT: Duration = Duration::from_secs(600);

/// How often `--wait` asks whether the reassignments have finished.
const REASSIGNMENT_POLL_INTERVAL: Duration = Duration::from_millis(250);

const _: () =
    assert!(REASSIGNMENT_POLL_INTERVAL.as_millis() < REASSIGNMENT_WAIT_TIMEOUT.as_millis());

/// Kafka's REQUEST_TIMED_OUT error code, for a `--wait` that gave up.
const REQUEST_TIMED_OUT: i16 = 7;

/// Error codes of the reassignment APIs that the client's table of names
/// lacks, so that a refusal still prints a name.
const REASSIGNMENT_ERROR_NAMES: &[(i16, &str)] = &[(85, "NO_REASSIGNMENT_IN_PROGRESS")];

/// A refusal as `NAME (code): message`, naming the reassignment codes the
/// client's table does not know.
pub(super) fn refusal_text(error: &KafkaError) -> String {
    let name = REASSIGNMENT_ERROR_NAMES
        .iter()
        .find(|(code, _)| *code == error.code)
        .map_or(error.name(), |(_, name)| name);
    match &error.message {
        Some(message) => format!("{name} ({}): {message}", error.code),
        None => format!("{name} ({})", error.code),
    }
}

fn refusal_json(error: &KafkaError) -> Value {
    json!({
        "code": error.code,
        "message": refusal_text(error),
    })
}

/// Polls until none of `targets` is being reassigned and each one with a
/// target shows exactly those replicas (in any order) in the metadata.
fn wait_for(admin: &mut Admin, targets: &[PartitionReassignment]) -> Result<(), ClientError> {
    if targets.is_empty() {
        return Ok(());
    }
    let deadline = Instant::now() + REASSIGNMENT_WAIT_TIMEOUT;
    let partitions: Vec<(&str, i32)> = targets
        .iter()
        .map(|target| (target.topic.as_str(), target.partition))
        .collect();
    let topics: Vec<&str> = targets
        .iter()
        .map(|target| target.topic.as_str())
        .collect::<BTreeSet<&str>>()
        .into_iter()
        .collect();
    loop {
        let ongoing = admin.list_partition_reassignments(Some(&partitions))?;
        let mut pending = ongoing.len();
        if ongoing.is_empty() {
            let metadata = admin.metadata(Some(&topics))?;
            pending = targets
                .iter()
                .filter(|target| {
                    let Some(wanted) = &target.replicas else {
                        return false;
                    };
                    let wanted: BTreeSet<i32> = wanted.iter().copied().collect();
                    let current = metadata
                        .topics
                        .iter()
                        .find(|topic| topic.name == target.topic)
                        .and_then(|topic| {
                            topic
                                .partitions
                                .iter()
                                .find(|partition| partition.partition == target.partition)
                        })
                        .map(|partition| partition.replicas.iter().copied().collect());
                    current != Some(wanted)
                })
                .count();
            if pending == 0 {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(ClientError::Broker(KafkaError::new(
                REQUEST_TIMED_OUT,
                Some(format!(
                    "{pending} of {} reassignment(s) still in progress after {} s; they go on, \
                     and `sluice topic reassignments` shows them",
                    targets.len(),
                    REASSIGNMENT_WAIT_TIMEOUT.as_secs()
                )),
            )));
        }
        thread::sleep(REASSIGNMENT_POLL_INTERVAL);
    }
}

/// `sluice topic reassign`: starts (or with `replicas` `None` cancels) the
/// reassignment of one partition, and with `wait` waits for it to finish.
pub(super) fn topic_reassign(
    admin: &mut Admin,
    name: &str,
    partition: i32,
    replicas: Option<&[i32]>,
    wait: bool,
    json: bool,
) -> Result<String, ClientError> {
    let asked = PartitionReassignment {
        topic: name.to_string(),
        partition,
        replicas: replicas.map(<[i32]>::to_vec),
    };
    // The user names the replicas outright, so a new factor is what they want.
    let results = admin.alter_partition_reassignments(std::slice::from_ref(&asked), true)?;
    for result in results {
        result.result.map_err(ClientError::Broker)?;
    }
    let mut settled = None;
    if wait {
        wait_for(admin, std::slice::from_ref(&asked))?;
        let topic = admin.describe_topic(name)?;
        settled = topic
            .partitions
            .into_iter()
            .find(|found| found.partition == partition);
    }
    if json {
        return Ok(json_text(&json!({
            "topic": name,
            "partition": partition,
            "cancelled": replicas.is_none(),
            "target_replicas": replicas,
            "finished": settled.is_some(),
            "leader": settled.as_ref().and_then(|found| found.leader),
            "replicas": settled.as_ref().map(|found| &found.replicas),
            "isr": settled.as_ref().map(|found| &found.isr),
        })));
    }
    let mut out = match replicas {
        Some(replicas) if wait => format!(
            "Moved partition {partition} of '{name}' to replicas {}.\n",
            node_list(replicas)
        ),
        Some(replicas) => format!(
            "Started moving partition {partition} of '{name}' to replicas {}; \
             `sluice topic reassignments {name}` shows its progress.\n",
            node_list(replicas)
        ),
        None => format!("Cancelled the reassignment of partition {partition} of '{name}'.\n"),
    };
    if let Some(found) = settled {
        let leader = found
            .leader
            .map_or("none".to_string(), |leader| leader.to_string());
        let _ = writeln!(
            out,
            "Partition {partition}: leader {leader}, replicas {}, ISR {}",
            node_list(&found.replicas),
            node_list(&found.isr)
        );
    }
    Ok(out)
}

/// `sluice topic reassignments`: the reassignments in progress, of one
/// topic or of all.
pub(super) fn topic_reassignments(
    admin: &mut Admin,
    name: Option<&str>,
    json: bool,
) -> Result<String, ClientError> {
    let mut ongoing = admin.list_partition_reassignments(None)?;
    if let Some(name) = name {
        ongoing.retain(|reassignment| reassignment.topic == name);
    }
    if json {
        let list: Vec<Value> = ongoing
            .iter()
            .map(|reassignment| {
                json!({
                    "topic": reassignment.topic,
                    "partition": reassignment.partition,
                    "replicas": reassignment.replicas,
                    "target_replicas": reassignment.target(),
                    "adding_replicas": reassignment.adding,
                    "removing_replicas": reassignment.removing,
                })
            })
            .collect();
        return Ok(json_text(&json!({ "reassignments": list })));
    }
    if ongoing.is_empty() {
        return Ok("No reassignments in progress.\n".to_string());
    }
    let rows: Vec<Vec<String>> = ongoing
        .iter()
        .map(|reassignment| {
            vec![
                reassignment.topic.clone(),
                reassignment.partition.to_string(),
                node_list(&reassignment.replicas),
                node_list(&reassignment.target()),
                node_list(&reassignment.adding),
                node_list(&reassignment.removing),
            ]
        })
        .collect();
    Ok(table(
        &[
            "TOPIC",
            "PARTITION",
            "REPLICAS",
            "TARGET",
            "ADDING",
            "REMOVING",
        ],
        &rows,
    ))
}

/// The cluster's layout for the planner: the live brokers, and every
/// partition (of `topic` only, if given) with the replicas it has or, while
/// it is being moved, is going to.
fn current_layout(
    admin: &mut Admin,
    topic: Option<&str>,
) -> Result<(Vec<i32>, Vec<CurrentPartition>), ClientError> {
    // Metadata lists the brokers that may take replicas: fenced ones are
    // left out, so their replicas are moved off them.
    let (brokers, topics) = match topic {
        Some(name) => {
            let brokers = admin.metadata(Some(&[]))?.brokers;
            (brokers, vec![admin.describe_topic(name)?])
        }
        None => {
            let metadata = admin.metadata(None)?;
            (metadata.brokers, metadata.topics)
        }
    };
    let brokers: Vec<i32> = brokers.iter().map(|broker| broker.node_id).collect();
    let ongoing: BTreeMap<(String, i32), OngoingReassignment> = admin
        .list_partition_reassignments(None)?
        .into_iter()
        .map(|reassignment| {
            (
                (reassignment.topic.clone(), reassignment.partition),
                reassignment,
            )
        })
        .collect();
    let mut partitions = Vec::new();
    for topic in topics.iter().filter(|topic| topic.error.is_none()) {
        for partition in &topic.partitions {
            let moving = ongoing.get(&(topic.name.clone(), partition.partition));
            partitions.push(CurrentPartition {
                topic: topic.name.clone(),
                partition: partition.partition,
                replicas: moving
                    .map_or_else(|| partition.replicas.clone(), |ongoing| ongoing.target()),
                reassigning: moving.is_some(),
            });
        }
    }
    Ok((brokers, partitions))
}

/// `sluice cluster rebalance`: plans (see [`rebalance`]), prints and, unless
/// `dry_run`, starts the plan; with `wait`, waits for it to finish.
pub(super) fn cluster_rebalance(
    admin: &mut Admin,
    topic: Option<&str>,
    dry_run: bool,
    wait: bool,
    json: bool,
) -> Result<String, ClientError> {
    let (brokers, partitions) = current_layout(admin, topic)?;
    let plan = rebalance::plan(&brokers, &partitions);
    let asked: Vec<PartitionReassignment> = plan
        .reassignments
        .iter()
        .map(|planned| PartitionReassignment {
            topic: planned.topic.clone(),
            partition: planned.partition,
            replicas: Some(planned.target.clone()),
        })
        .collect();
    // The plan keeps every factor; refusing changes guards against a layout
    // that changed since it was read.
    let refusals: Vec<Option<KafkaError>> = if dry_run || asked.is_empty() {
        vec![None; asked.len()]
    } else {
        admin
            .alter_partition_reassignments(&asked, false)?
            .into_iter()
            .map(|result| result.result.err())
            .collect()
    };
    let started: Vec<PartitionReassignment> = asked
        .iter()
        .zip(&refusals)
        .filter(|(_, refusal)| refusal.is_none())
        .map(|(asked, _)| asked.clone())
        .collect();
    let refused = refusals.iter().flatten().count();
    let waited = wait && !dry_run && refused == 0;
    if waited {
        wait_for(admin, &started)?;
    }
    let out = plan_text(&brokers, &plan, &refusals, dry_run, waited, json);
    match refusals.iter().flatten().next() {
        None => Ok(out),
        Some(first) => {
            // The plan, with what was refused, is worth showing before the error.
            emit(&out);
            Err(ClientError::Broker(KafkaError::new(
                first.code,
                Some(format!(
                    "{refused} of {} reassignment(s) were refused; the first: {}",
                    asked.len(),
                    refusal_text(first)
                )),
            )))
        }
    }
}

fn plan_text(
    brokers: &[i32],
    plan: &Plan,
    refusals: &[Option<KafkaError>],
    dry_run: bool,
    waited: bool,
    json: bool,
) -> String {
    if json {
        let reassignments: Vec<Value> = plan
            .reassignments
            .iter()
            .zip(refusals)
            .map(|(planned, refusal)| {
                json!({
                    "topic": planned.topic,
                    "partition": planned.partition,
                    "current_replicas": planned.current,
                    "target_replicas": planned.target,
                    "error": refusal.as_ref().map(refusal_json),
                })
            })
            .collect();
        let skipped: Vec<Value> = plan
            .skipped
            .iter()
            .map(|skipped| {
                json!({
                    "topic": skipped.topic,
                    "partition": skipped.partition,
                    "reason": skipped.reason,
                })
            })
            .collect();
        return json_text(&json!({
            "brokers": brokers,
            "dry_run": dry_run,
            "waited": waited,
            "moved_replicas": plan.moved_replicas(),
            "reassignments": reassignments,
            "skipped": skipped,
        }));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Live brokers: {}. {} partition(s) to reassign, {} replica(s) to move.",
        node_list(brokers),
        plan.reassignments.len(),
        plan.moved_replicas()
    );
    if !plan.reassignments.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = plan
            .reassignments
            .iter()
            .zip(refusals)
            .map(|(planned, refusal)| {
                vec![
                    planned.topic.clone(),
                    planned.partition.to_string(),
                    node_list(&planned.current),
                    node_list(&planned.target),
                    refusal.as_ref().map_or("-".to_string(), refusal_text),
                ]
            })
            .collect();
        out.push_str(&table(
            &["TOPIC", "PARTITION", "CURRENT", "TARGET", "ERROR"],
            &rows,
        ));
    }
    if !plan.skipped.is_empty() {
        out.push('\n');
        for skipped in &plan.skipped {
            let _ = writeln!(
                out,
                "Skipped {}-{}: {}.",
                skipped.topic, skipped.partition, skipped.reason
            );
        }
    }
    if plan.reassignments.is_empty() {
        out.push_str("\nThe cluster is balanced: nothing to do.\n");
    } else if dry_run {
        out.push_str("\nDry run: nothing was started. Run without --dry-run to start it.\n");
    } else if refusals.iter().any(Option::is_some) {
        out.push_str("\nThe reassignments without an error were started.\n");
    } else if waited {
        out.push_str("\nEvery reassignment has finished.\n");
    } else {
        out.push_str("\nStarted. `sluice topic reassignments` shows the moves in progress.\n");
    }
    out
}
