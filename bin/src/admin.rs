//! The admin commands (`sluice topic ...`, `sluice group ...`,
//! `sluice txn ...`, `sluice cluster ...`): printing over
//! [`sluice_net::client::Admin`], which speaks the Kafka protocol to any
//! Kafka-compatible broker. Their command line is declared for clap in
//! [`args`].
//!
//! Output is built into one string and written at the end, so a closed pipe
//! (`sluice topic list | head -1`) is not a panic. Exit status: 0 on success,
//! 1 when the broker refuses or cannot be reached, 2 for usage errors.
//!
//! Partition reassignments (`topic reassign`, `topic reassignments`,
//! `cluster rebalance`) live in [`reassign`], the rebalance planner in
//! [`rebalance`], leader elections (`cluster elect-leaders`) in [`elect`],
//! record removal (`topic trim`) in [`trim`], sizes and offset counts
//! (`topic describe --stats`) in [`stats`]. `sluice produce` and
//! `sluice consume` stream records rather than print one answer; they live
//! in [`produce`] and [`consume`], with what they share in [`stream`].
//! ACLs (`sluice acl ...`) live in [`acl`], a running broker's SCRAM users
//! (`sluice user ... --bootstrap-server`) in [`users`], and the
//! `--command-config` file every command takes (how to log in) in
//! [`command_config`].

pub mod acl;
pub mod args;
mod command_config;
pub mod consume;
mod elect;
pub mod produce;
pub mod quota;
mod reassign;
mod rebalance;
mod stats;
mod stream;
mod trim;
pub mod users;

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

use serde_json::{json, Map, Value};
use sluice_net::broker::base64_url;
use sluice_net::client::admin::ElectionType;
use sluice_net::client::{
    Admin, ClientError, ClientOptions, CommittedOffset, ConfigChange, ConfigResource, ConfigSource,
    KafkaError, NewTopic, OffsetSpec, PartitionOffset,
};

const BOOTSTRAP_DEFAULT: &str = "127.0.0.1:9092";

/// Exit status when the broker refuses a request or cannot be reached.
const EXIT_FAILED: u8 = 1;

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    TopicCreate(NewTopic),
    TopicList,
    /// `stats`: sizes on disk and record counts instead of replicas and
    /// configs.
    TopicDescribe {
        name: String,
        stats: bool,
    },
    TopicDelete {
        name: String,
    },
    TopicAlterConfig {
        name: String,
        changes: Vec<ConfigChange>,
    },
    /// `partitions: None` trims every partition; `before` may be
    /// [`sluice_net::client::DELETE_BEFORE_HIGH_WATERMARK`].
    TopicTrim {
        name: String,
        partitions: Option<Vec<i32>>,
        before: i64,
    },
    /// `replicas: None` cancels the reassignment in progress.
    TopicReassign {
        name: String,
        partition: i32,
        replicas: Option<Vec<i32>>,
        wait: bool,
    },
    TopicReassignments {
        name: Option<String>,
    },
    GroupList {
        states: Vec<String>,
    },
    GroupDescribe {
        group: String,
    },
    GroupDelete {
        group: String,
    },
    GroupResetOffsets {
        group: String,
        topic: String,
        target: ResetTarget,
        execute: bool,
    },
    TxnList {
        states: Vec<String>,
    },
    TxnDescribe {
        id: String,
    },
    ClusterInfo,
    ClusterRebalance {
        topic: Option<String>,
        dry_run: bool,
        wait: bool,
    },
    /// `partition` only with `topic`; neither: every partition.
    ClusterElectLeaders {
        election: ElectionType,
        topic: Option<String>,
        partition: Option<i32>,
    },
}

/// Where `group reset-offsets` moves a group's offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetTarget {
    Earliest,
    Latest,
    /// Clamped into each partition's `[earliest, latest]` range, as Kafka does.
    Offset(i64),
    /// The first offset at or after this timestamp (ms since the epoch); the
    /// latest offset where no record is that new.
    Datetime(i64),
}

#[derive(Debug, PartialEq, Eq)]
pub struct Invocation {
    bootstrap: String,
    /// `--command-config FILE`, read once the command line parsed.
    command_config: Option<String>,
    json: bool,
    command: Command,
}

/// A failed command: what was being done, and why it failed.
struct Failure {
    doing: String,
    error: ClientError,
}

/// Runs an admin command.
pub fn run(invocation: Invocation) -> ExitCode {
    let options = match command_config::client_options(invocation.command_config.as_deref()) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("sluice: {message}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    match execute(&invocation, options) {
        Ok(output) => {
            emit(&output);
            ExitCode::SUCCESS
        }
        Err(Failure { doing, error }) => report_failure(&doing, &error),
    }
}

/// Connects with the login of `command_config` and runs `call`: its output
/// on stdout, or one line on stderr and a failing exit status (the
/// commands whose calls are not [`Command`]s: acl, quota, user).
fn run_against_broker(
    bootstrap: &str,
    command_config: Option<&str>,
    doing: &str,
    call: impl FnOnce(&mut Admin) -> Result<String, ClientError>,
) -> ExitCode {
    let options = match command_config::client_options(command_config) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("sluice: {message}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    match Admin::connect(bootstrap, options).and_then(|mut admin| call(&mut admin)) {
        Ok(output) => {
            emit(&output);
            ExitCode::SUCCESS
        }
        Err(error) => report_failure(doing, &error),
    }
}

/// The one line on stderr for a failed command, and its exit status.
fn report_failure(doing: &str, error: &ClientError) -> ExitCode {
    let why = match error {
        ClientError::Broker(refusal) => elect::refusal_text(refusal),
        other => other.to_string(),
    };
    eprintln!("sluice: {doing} failed: {why}");
    ExitCode::from(EXIT_FAILED)
}

/// Writes the output; a reader that went away is not an error worth a panic.
fn emit(output: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(output.as_bytes())
        .and_then(|()| stdout.flush());
}

fn describe_command(command: &Command) -> String {
    match command {
        Command::TopicCreate(topic) => format!("create topic '{}'", topic.name),
        Command::TopicList => "list topics".to_string(),
        Command::TopicDescribe { name, .. } => format!("describe topic '{name}'"),
        Command::TopicDelete { name } => format!("delete topic '{name}'"),
        Command::TopicAlterConfig { name, .. } => format!("alter configs of topic '{name}'"),
        Command::TopicTrim { name, .. } => format!("trim topic '{name}'"),
        Command::TopicReassign {
            name,
            partition,
            replicas: Some(_),
            ..
        } => format!("reassign partition {partition} of topic '{name}'"),
        Command::TopicReassign {
            name,
            partition,
            replicas: None,
            ..
        } => format!("cancel the reassignment of partition {partition} of topic '{name}'"),
        Command::TopicReassignments { .. } => "list reassignments".to_string(),
        Command::GroupList { .. } => "list groups".to_string(),
        Command::GroupDescribe { group } => format!("describe group '{group}'"),
        Command::GroupDelete { group } => format!("delete group '{group}'"),
        Command::GroupResetOffsets { group, .. } => format!("reset offsets of group '{group}'"),
        Command::TxnList { .. } => "list transactions".to_string(),
        Command::TxnDescribe { id } => format!("describe transactional id '{id}'"),
        Command::ClusterInfo => "describe cluster".to_string(),
        Command::ClusterRebalance { .. } => "rebalance the cluster".to_string(),
        Command::ClusterElectLeaders {
            topic: Some(topic), ..
        } => format!("elect leaders of topic '{topic}'"),
        Command::ClusterElectLeaders { topic: None, .. } => "elect leaders".to_string(),
    }
}

fn execute(invocation: &Invocation, options: ClientOptions) -> Result<String, Failure> {
    let failed = |error| Failure {
        doing: describe_command(&invocation.command),
        error,
    };
    let mut admin = Admin::connect(&invocation.bootstrap, options).map_err(failed)?;
    let json = invocation.json;
    match &invocation.command {
        Command::TopicCreate(topic) => topic_create(&mut admin, topic, json),
        Command::TopicList => topic_list(&mut admin, json),
        Command::TopicDescribe { name, stats: false } => topic_describe(&mut admin, name, json),
        Command::TopicDescribe { name, stats: true } => stats::topic_stats(&mut admin, name, json),
        Command::TopicDelete { name } => topic_delete(&mut admin, name, json),
        Command::TopicAlterConfig { name, changes } => {
            topic_alter_config(&mut admin, name, changes, json)
        }
        Command::TopicTrim {
            name,
            partitions,
            before,
        } => trim::topic_trim(&mut admin, name, partitions.as_deref(), *before, json),
        Command::GroupList { states } => group_list(&mut admin, states, json),
        Command::GroupDescribe { group } => group_describe(&mut admin, group, json),
        Command::GroupDelete { group } => group_delete(&mut admin, group, json),
        Command::GroupResetOffsets {
            group,
            topic,
            target,
            execute,
        } => group_reset_offsets(&mut admin, group, topic, *target, *execute, json),
        Command::TxnList { states } => txn_list(&mut admin, states, json),
        Command::TxnDescribe { id } => txn_describe(&mut admin, id, json),
        Command::ClusterInfo => cluster_info(&mut admin, json),
        Command::TopicReassign {
            name,
            partition,
            replicas,
            wait,
        } => reassign::topic_reassign(
            &mut admin,
            name,
            *partition,
            replicas.as_deref(),
            *wait,
            json,
        ),
        Command::TopicReassignments { name } => {
            reassign::topic_reassignments(&mut admin, name.as_deref(), json)
        }
        Command::ClusterRebalance {
            topic,
            dry_run,
            wait,
        } => reassign::cluster_rebalance(&mut admin, topic.as_deref(), *dry_run, *wait, json),
        Command::ClusterElectLeaders {
            election,
            topic,
            partition,
        } => {
            elect::cluster_elect_leaders(&mut admin, *election, topic.as_deref(), *partition, json)
        }
    }
    .map_err(failed)
}

/// Pretty JSON (serde_json's alternate `Display`), with a final newline.
fn json_text(value: &Value) -> String {
    format!("{value:#}\n")
}

/// Columns separated by two spaces, each as wide as its widest cell.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers
        .iter()
        .map(|header| header.chars().count())
        .collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = headers.iter().map(|header| header.to_string()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            let _ = write!(line, "{cell:<width$}  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn node_list(nodes: &[i32]) -> String {
    if nodes.is_empty() {
        return "-".to_string();
    }
    nodes
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Kafka prints topic ids as URL-safe base64, as it does cluster ids.
fn topic_id_text(id: &uuid::Uuid) -> String {
    base64_url(id.as_bytes())
}

fn topic_create(admin: &mut Admin, topic: &NewTopic, json: bool) -> Result<String, ClientError> {
    let created = admin.create_topic(topic)?;
    // Older CreateTopics versions do not echo the counts: fall back to what
    // was asked for.
    let partitions = created.partitions.or(topic.partitions);
    let replication_factor = created.replication_factor.or(topic.replication_factor);
    if json {
        return Ok(json_text(&json!({
            "name": created.name,
            "topic_id": created.topic_id.as_ref().map(topic_id_text),
            "partitions": partitions,
            "replication_factor": replication_factor,
        })));
    }
    let count = |value: Option<String>| value.unwrap_or_else(|| "the broker's default".into());
    Ok(format!(
        "Created topic '{}' with {} partition(s) and replication factor {}.\n",
        created.name,
        count(partitions.map(|value| value.to_string())),
        count(replication_factor.map(|value| value.to_string())),
    ))
}

fn topic_list(admin: &mut Admin, json: bool) -> Result<String, ClientError> {
    let mut topics = admin.metadata(None)?.topics;
    topics.retain(|topic| topic.error.is_none());
    topics.sort_by(|left, right| left.name.cmp(&right.name));
    if json {
        let list: Vec<Value> = topics
            .iter()
            .map(|topic| {
                json!({
                    "name": topic.name,
                    "topic_id": topic.topic_id.as_ref().map(topic_id_text),
                    "partitions": topic.partitions.len(),
                    "replication_factor": topic.replication_factor(),
                    "internal": topic.internal,
                })
            })
            .collect();
        return Ok(json_text(&json!({ "topics": list })));
    }
    if topics.is_empty() {
        return Ok("No topics.\n".to_string());
    }
    let rows: Vec<Vec<String>> = topics
        .iter()
        .map(|topic| {
            let name = if topic.internal {
                format!("{} (internal)", topic.name)
            } else {
                topic.name.clone()
            };
            vec![
                name,
                topic.partitions.len().to_string(),
                topic.replication_factor().to_string(),
            ]
        })
        .collect();
    Ok(table(&["TOPIC", "PARTITIONS", "REPLICATION-FACTOR"], &rows))
}

fn offset_for(offsets: &[PartitionOffset], partition: i32) -> Option<&PartitionOffset> {
    offsets.iter().find(|offset| offset.partition == partition)
}

fn offset_text(offset: Option<&PartitionOffset>) -> String {
    match offset.map(|offset| &offset.offset) {
        Some(Ok(value)) => value.to_string(),
        Some(Err(error)) => error.name().to_string(),
        None => "-".to_string(),
    }
}

fn offset_json(offset: Option<&PartitionOffset>) -> Value {
    match offset.map(|offset| &offset.offset) {
        Some(Ok(value)) => json!(value),
        _ => Value::Null,
    }
}

fn topic_describe(admin: &mut Admin, name: &str, json: bool) -> Result<String, ClientError> {
    let topic = admin.describe_topic(name)?;
    let earliest = admin.list_offsets(&topic, OffsetSpec::Earliest)?;
    let latest = admin.list_offsets(&topic, OffsetSpec::Latest)?;
    // Kafka's tools show the configs set on the topic itself; defaults
    // inherited from the broker are noise here.
    let overrides: Vec<_> = admin
        .describe_configs(&ConfigResource::Topic(name.to_string()))?
        .into_iter()
        .filter(|entry| entry.source == ConfigSource::DynamicTopic)
        .collect();
    if json {
        let mut configs = Map::new();
        for entry in &overrides {
            configs.insert(entry.name.clone(), json!(entry.value));
        }
        let partitions: Vec<Value> = topic
            .partitions
            .iter()
            .map(|partition| {
                let earliest = offset_for(&earliest, partition.partition);
                let latest = offset_for(&latest, partition.partition);
                let errors: Vec<Value> = [
                    partition.error.as_ref(),
                    earliest.and_then(|offset| offset.offset.as_ref().err()),
                    latest.and_then(|offset| offset.offset.as_ref().err()),
                ]
                .into_iter()
                .flatten()
                .map(|error| json!({ "code": error.code, "name": error.name() }))
                .collect();
                json!({
                    "partition": partition.partition,
                    "leader": partition.leader,
                    "leader_epoch": partition.leader_epoch,
                    "replicas": partition.replicas,
                    "isr": partition.isr,
                    "offline_replicas": partition.offline_replicas,
                    "earliest_offset": offset_json(earliest),
                    "latest_offset": offset_json(latest),
                    "errors": errors,
                })
            })
            .collect();
        return Ok(json_text(&json!({
            "name": topic.name,
            "topic_id": topic.topic_id.as_ref().map(topic_id_text),
            "internal": topic.internal,
            "replication_factor": topic.replication_factor(),
            "partitions": partitions,
            "configs": configs,
        })));
    }
    let mut out = String::new();
    let _ = writeln!(out, "Topic:              {}", topic.name);
    if let Some(id) = &topic.topic_id {
        let _ = writeln!(out, "Topic id:           {}", topic_id_text(id));
    }
    let _ = writeln!(out, "Partitions:         {}", topic.partitions.len());
    let _ = writeln!(out, "Replication factor: {}", topic.replication_factor());
    if overrides.is_empty() {
        let _ = writeln!(out, "Configs:            (none set on the topic)");
    } else {
        let _ = writeln!(out, "Configs:");
        let width = overrides
            .iter()
            .map(|entry| entry.name.len())
            .max()
            .unwrap_or(0);
        for entry in &overrides {
            let value = entry.value.as_deref().unwrap_or("(sensitive)");
            let _ = writeln!(out, "    {:<width$} = {value}", entry.name);
        }
    }
    out.push('\n');
    let rows: Vec<Vec<String>> = topic
        .partitions
        .iter()
        .map(|partition| {
            let leader = match (&partition.error, partition.leader) {
                (Some(error), _) => error.name().to_string(),
                (None, Some(leader)) => leader.to_string(),
                (None, None) => "none".to_string(),
            };
            vec![
                partition.partition.to_string(),
                leader,
                node_list(&partition.replicas),
                node_list(&partition.isr),
                offset_text(offset_for(&earliest, partition.partition)),
                offset_text(offset_for(&latest, partition.partition)),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "PARTITION",
            "LEADER",
            "REPLICAS",
            "ISR",
            "EARLIEST",
            "LATEST",
        ],
        &rows,
    ));
    Ok(out)
}

fn topic_delete(admin: &mut Admin, name: &str, json: bool) -> Result<String, ClientError> {
    admin.delete_topic(name)?;
    if json {
        return Ok(json_text(&json!({ "deleted": name })));
    }
    Ok(format!("Deleted topic '{name}'.\n"))
}

fn topic_alter_config(
    admin: &mut Admin,
    name: &str,
    changes: &[ConfigChange],
    json: bool,
) -> Result<String, ClientError> {
    admin.alter_configs(&ConfigResource::Topic(name.to_string()), changes)?;
    let mut set = Map::new();
    let mut deleted = Vec::new();
    let mut appended = Map::new();
    let mut subtracted = Map::new();
    // In the order given, for the human output.
    let mut set_pairs = Vec::new();
    let mut appended_pairs = Vec::new();
    let mut subtracted_pairs = Vec::new();
    for change in changes {
        match change {
            ConfigChange::Set { name, value } => {
                set.insert(name.clone(), json!(value));
                set_pairs.push(format!("{name}={value}"));
            }
            ConfigChange::Delete { name } => deleted.push(name.clone()),
            ConfigChange::Append { name, value } => {
                appended.insert(name.clone(), json!(value));
                appended_pairs.push(format!("{value} to {name}"));
            }
            ConfigChange::Subtract { name, value } => {
                subtracted.insert(name.clone(), json!(value));
                subtracted_pairs.push(format!("{value} from {name}"));
            }
        }
    }
    if json {
        return Ok(json_text(&json!({
            "topic": name,
            "set": set,
            "deleted": deleted,
            "appended": appended,
            "subtracted": subtracted,
        })));
    }
    let mut parts = Vec::new();
    if !set_pairs.is_empty() {
        parts.push(format!("set {}", set_pairs.join(", ")));
    }
    if !deleted.is_empty() {
        parts.push(format!("deleted {}", deleted.join(", ")));
    }
    if !appended_pairs.is_empty() {
        parts.push(format!("appended {}", appended_pairs.join(", ")));
    }
    if !subtracted_pairs.is_empty() {
        parts.push(format!("subtracted {}", subtracted_pairs.join(", ")));
    }
    Ok(format!(
        "Altered configs of topic '{name}': {}.\n",
        parts.join("; ")
    ))
}

fn group_list(admin: &mut Admin, states: &[String], json: bool) -> Result<String, ClientError> {
    let groups = admin.list_groups(states)?;
    if json {
        let list: Vec<Value> = groups
            .iter()
            .map(|group| {
                json!({
                    "group_id": group.group_id,
                    "state": group.state,
                    "protocol_type": group.protocol_type,
                })
            })
            .collect();
        return Ok(json_text(&json!({ "groups": list })));
    }
    if groups.is_empty() {
        return Ok("No groups.\n".to_string());
    }
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|group| {
            vec![
                group.group_id.clone(),
                group.state.clone().unwrap_or_else(|| "-".to_string()),
                dash_if_empty(&group.protocol_type),
            ]
        })
        .collect();
    Ok(table(&["GROUP", "STATE", "PROTOCOL-TYPE"], &rows))
}

fn txn_list(admin: &mut Admin, states: &[String], json: bool) -> Result<String, ClientError> {
    let listed = admin.list_transactions(states)?;
    if json {
        let list: Vec<Value> = listed
            .iter()
            .map(|txn| {
                json!({
                    "transactional_id": txn.transactional_id,
                    "producer_id": txn.producer_id,
                    "state": txn.state,
                })
            })
            .collect();
        return Ok(json_text(&json!({ "transactions": list })));
    }
    if listed.is_empty() {
        return Ok("No transactions.\n".to_string());
    }
    let rows: Vec<Vec<String>> = listed
        .iter()
        .map(|txn| {
            vec![
                txn.transactional_id.clone(),
                txn.producer_id.to_string(),
                txn.state.clone(),
            ]
        })
        .collect();
    Ok(table(&["TRANSACTIONAL-ID", "PRODUCER-ID", "STATE"], &rows))
}

fn txn_describe(admin: &mut Admin, id: &str, json: bool) -> Result<String, ClientError> {
    let txn = admin.describe_transaction(id)?;
    let partitions: Vec<String> = txn
        .partitions
        .iter()
        .flat_map(|(topic, ids)| ids.iter().map(move |id| format!("{topic}-{id}")))
        .collect();
    if json {
        return Ok(json_text(&json!({
            "transactional_id": txn.transactional_id,
            "state": txn.state,
            "producer_id": txn.producer_id,
            "producer_epoch": txn.producer_epoch,
            "timeout_ms": txn.timeout_ms,
            "start_ms": txn.start_ms,
            "partitions": partitions,
        })));
    }
    let mut out = String::new();
    let _ = writeln!(out, "Transactional id: {}", txn.transactional_id);
    let _ = writeln!(out, "State:            {}", txn.state);
    let _ = writeln!(out, "Producer id:      {}", txn.producer_id);
    let _ = writeln!(out, "Producer epoch:   {}", txn.producer_epoch);
    let _ = writeln!(out, "Timeout:          {} ms", txn.timeout_ms);
    if txn.start_ms >= 0 {
        let _ = writeln!(out, "Started:          {} ms since the epoch", txn.start_ms);
    }
    if partitions.is_empty() {
        let _ = writeln!(out, "Partitions:       -");
    } else {
        let _ = writeln!(out, "Partitions:       {}", partitions.join(", "));
    }
    Ok(out)
}

fn dash_if_empty(value: &str) -> String {
    if value.is_empty() {
        "-".to_string()
    } else {
        value.to_string()
    }
}

/// One partition row of `group describe`.
struct GroupPartition {
    topic: String,
    partition: i32,
    /// `None` when the group has not committed an offset for it.
    committed: Option<i64>,
    log_end: Option<i64>,
    member: Option<usize>,
}

impl GroupPartition {
    fn lag(&self) -> Option<i64> {
        Some(self.log_end? - self.committed?).map(|lag| lag.max(0))
    }
}

/// The latest offset of each partition of `topic`, or none for a topic
/// that no longer exists.
fn log_end_offsets(admin: &mut Admin, topic: &str) -> Result<Vec<PartitionOffset>, ClientError> {
    let metadata = match admin.describe_topic(topic) {
        Ok(metadata) => metadata,
        Err(ClientError::Broker(_)) => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    admin.list_offsets(&metadata, OffsetSpec::Latest)
}

fn group_describe(admin: &mut Admin, group: &str, json: bool) -> Result<String, ClientError> {
    let description = admin.describe_group(group)?;
    let committed = admin.committed_offsets(group)?;
    if description.state == "Dead" && committed.is_empty() {
        return Err(ClientError::Broker(KafkaError::new(
            GROUP_ID_NOT_FOUND,
            Some(format!("Group '{group}' does not exist.")),
        )));
    }
    let mut partitions: Vec<GroupPartition> = committed
        .iter()
        .map(|offset: &CommittedOffset| GroupPartition {
            topic: offset.topic.clone(),
            partition: offset.partition,
            committed: offset.offset.clone().ok().filter(|offset| *offset >= 0),
            log_end: None,
            member: None,
        })
        .collect();
    for (index, member) in description.members.iter().enumerate() {
        for (topic, assigned) in &member.assignment {
            for partition in assigned {
                let known = partitions
                    .iter_mut()
                    .find(|row| row.topic == *topic && row.partition == *partition);
                match known {
                    Some(row) => row.member = Some(index),
                    None => partitions.push(GroupPartition {
                        topic: topic.clone(),
                        partition: *partition,
                        committed: None,
                        log_end: None,
                        member: Some(index),
                    }),
                }
            }
        }
    }
    partitions
        .sort_by(|left, right| (&left.topic, left.partition).cmp(&(&right.topic, right.partition)));
    let mut topics: Vec<String> = partitions.iter().map(|row| row.topic.clone()).collect();
    topics.dedup();
    for topic in topics {
        let ends = log_end_offsets(admin, &topic)?;
        for row in partitions.iter_mut().filter(|row| row.topic == topic) {
            row.log_end = offset_for(&ends, row.partition).and_then(|end| end.offset.clone().ok());
        }
    }
    let members = &description.members;
    if json {
        let member_list: Vec<Value> = members
            .iter()
            .map(|member| {
                let assignment: Vec<Value> = member
                    .assignment
                    .iter()
                    .map(|(topic, partitions)| json!({ "topic": topic, "partitions": partitions }))
                    .collect();
                json!({
                    "member_id": member.member_id,
                    "group_instance_id": member.group_instance_id,
                    "client_id": member.client_id,
                    "host": member.client_host,
                    "assignment": assignment,
                })
            })
            .collect();
        let offsets: Vec<Value> = partitions
            .iter()
            .map(|row| {
                json!({
                    "topic": row.topic,
                    "partition": row.partition,
                    "committed_offset": row.committed,
                    "log_end_offset": row.log_end,
                    "lag": row.lag(),
                    "member_id": row.member.map(|index| members[index].member_id.clone()),
                })
            })
            .collect();
        return Ok(json_text(&json!({
            "group_id": description.group_id,
            "state": description.state,
            "protocol_type": description.protocol_type,
            "protocol": description.protocol,
            "members": member_list,
            "offsets": offsets,
        })));
    }
    let mut out = String::new();
    let _ = writeln!(out, "Group:          {}", description.group_id);
    let _ = writeln!(out, "State:          {}", description.state);
    let _ = writeln!(
        out,
        "Protocol type:  {}",
        dash_if_empty(&description.protocol_type)
    );
    let _ = writeln!(
        out,
        "Protocol:       {}",
        dash_if_empty(&description.protocol)
    );
    let _ = writeln!(out, "Members:        {}", members.len());
    if !members.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = members
            .iter()
            .map(|member| {
                let assignment: Vec<String> = member
                    .assignment
                    .iter()
                    .map(|(topic, partitions)| format!("{topic}:{}", node_list(partitions)))
                    .collect();
                vec![
                    member.member_id.clone(),
                    dash_if_empty(&member.client_id),
                    dash_if_empty(&member.client_host),
                    if assignment.is_empty() {
                        "-".to_string()
                    } else {
                        assignment.join(" ")
                    },
                ]
            })
            .collect();
        out.push_str(&table(
            &["MEMBER-ID", "CLIENT-ID", "HOST", "ASSIGNMENT"],
            &rows,
        ));
    }
    out.push('\n');
    if partitions.is_empty() {
        out.push_str("No committed offsets or assigned partitions.\n");
        return Ok(out);
    }
    let number = |value: Option<i64>| value.map_or("-".to_string(), |value| value.to_string());
    let rows: Vec<Vec<String>> = partitions
        .iter()
        .map(|row| {
            let member = row.member.map(|index| &members[index]);
            vec![
                row.topic.clone(),
                row.partition.to_string(),
                number(row.committed),
                number(row.log_end),
                number(row.lag()),
                member.map_or("-".to_string(), |member| member.member_id.clone()),
                member.map_or("-".to_string(), |member| dash_if_empty(&member.client_host)),
                member.map_or("-".to_string(), |member| dash_if_empty(&member.client_id)),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "CONSUMER-ID",
            "HOST",
            "CLIENT-ID",
        ],
        &rows,
    ));
    Ok(out)
}

/// Kafka's GROUP_ID_NOT_FOUND error code.
const GROUP_ID_NOT_FOUND: i16 = 69;

fn group_delete(admin: &mut Admin, group: &str, json: bool) -> Result<String, ClientError> {
    admin.delete_group(group)?;
    if json {
        return Ok(json_text(&json!({ "deleted": group })));
    }
    Ok(format!("Deleted group '{group}'.\n"))
}

/// A partition's offset from a ListOffsets answer, its error as `Err`.
fn required_offset(offsets: &[PartitionOffset], partition: i32) -> Result<i64, ClientError> {
    match offset_for(offsets, partition).map(|offset| &offset.offset) {
        Some(Ok(offset)) => Ok(*offset),
        Some(Err(error)) => Err(ClientError::Broker(error.clone())),
        None => Err(ClientError::Broker(KafkaError::new(
            UNKNOWN_TOPIC_OR_PARTITION,
            Some(format!("no offset for partition {partition}")),
        ))),
    }
}

/// ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID and REBALANCE_IN_PROGRESS: how
/// brokers refuse a simple commit to a group with members.
const ACTIVE_GROUP_ERRORS: [i16; 3] = [22, 25, 27];

/// Kafka's UNKNOWN_TOPIC_OR_PARTITION error code.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

fn group_reset_offsets(
    admin: &mut Admin,
    group: &str,
    topic: &str,
    target: ResetTarget,
    execute: bool,
    json: bool,
) -> Result<String, ClientError> {
    let metadata = admin.describe_topic(topic)?;
    let earliest = admin.list_offsets(&metadata, OffsetSpec::Earliest)?;
    let latest = admin.list_offsets(&metadata, OffsetSpec::Latest)?;
    let by_time = match target {
        ResetTarget::Datetime(timestamp) => {
            Some(admin.list_offsets(&metadata, OffsetSpec::Timestamp(timestamp))?)
        }
        _ => None,
    };
    let committed = admin.committed_offsets(group)?;
    let mut plan: Vec<(i32, Option<i64>, i64)> = Vec::new();
    for partition in &metadata.partitions {
        let index = partition.partition;
        let low = required_offset(&earliest, index)?;
        let high = required_offset(&latest, index)?;
        let new_offset = match target {
            ResetTarget::Earliest => low,
            ResetTarget::Latest => high,
            ResetTarget::Offset(offset) => offset.clamp(low, high.max(low)),
            ResetTarget::Datetime(_) => {
                let found = required_offset(by_time.as_deref().unwrap_or_default(), index)?;
                // -1: no record that new, so the end of the log.
                if found < 0 {
                    high
                } else {
                    found
                }
            }
        };
        let current = committed
            .iter()
            .find(|offset| offset.topic == topic && offset.partition == index)
            .and_then(|offset| offset.offset.clone().ok())
            .filter(|offset| *offset >= 0);
        plan.push((index, current, new_offset));
    }
    if execute {
        let offsets: Vec<(String, i32, i64)> = plan
            .iter()
            .map(|(partition, _, offset)| (topic.to_string(), *partition, *offset))
            .collect();
        admin
            .commit_offsets(group, &offsets)
            .map_err(|error| match error {
                // What a broker answers a simple commit while the group has
                // members; its message, if any, is kept.
                ClientError::Broker(refusal)
                    if refusal.message.is_none() && ACTIVE_GROUP_ERRORS.contains(&refusal.code) =>
                {
                    ClientError::Broker(KafkaError::new(
                        refusal.code,
                        Some(format!(
                            "group '{group}' has active members; stop its consumers first"
                        )),
                    ))
                }
                other => other,
            })?;
    }
    if json {
        let partitions: Vec<Value> = plan
            .iter()
            .map(|(partition, current, new_offset)| {
                json!({
                    "topic": topic,
                    "partition": partition,
                    "current_offset": current,
                    "new_offset": new_offset,
                })
            })
            .collect();
        return Ok(json_text(&json!({
            "group_id": group,
            "executed": execute,
            "partitions": partitions,
        })));
    }
    let rows: Vec<Vec<String>> = plan
        .iter()
        .map(|(partition, current, new_offset)| {
            vec![
                topic.to_string(),
                partition.to_string(),
                current.map_or("-".to_string(), |offset| offset.to_string()),
                new_offset.to_string(),
            ]
        })
        .collect();
    let mut out = table(
        &["TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"],
        &rows,
    );
    if execute {
        let _ = writeln!(out, "\nCommitted the new offsets for group '{group}'.");
    } else {
        let _ = writeln!(
            out,
            "\nDry run: nothing was committed. Add --execute to commit these offsets."
        );
    }
    Ok(out)
}

fn cluster_info(admin: &mut Admin, json: bool) -> Result<String, ClientError> {
    let cluster = admin.describe_cluster()?;
    let quorum = admin.describe_quorum()?;
    if json {
        let quorum = quorum.as_ref().map(|quorum| {
            json!({
                "leader": quorum.leader,
                "epoch": quorum.epoch,
                "high_watermark": quorum.high_watermark,
                "voters": quorum
                    .voters
                    .iter()
                    .map(|(id, log_end)| json!({"node_id": id, "log_end_offset": log_end}))
                    .collect::<Vec<Value>>(),
            })
        });
        let brokers: Vec<Value> = cluster
            .brokers
            .iter()
            .map(|broker| {
                json!({
                    "node_id": broker.node_id,
                    "host": broker.host,
                    "port": broker.port,
                    "rack": broker.rack,
                })
            })
            .collect();
        return Ok(json_text(&json!({
            "cluster_id": cluster.cluster_id,
            "controller_id": cluster.controller_id,
            "brokers": brokers,
            "quorum": quorum,
        })));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Cluster id:  {}",
        cluster.cluster_id.as_deref().unwrap_or("(none)")
    );
    let controller = cluster
        .controller_id
        .map_or("(none)".to_string(), |id| id.to_string());
    let _ = writeln!(out, "Controller:  {controller}");
    let _ = writeln!(out, "Brokers:     {}", cluster.brokers.len());
    out.push('\n');
    let rows: Vec<Vec<String>> = cluster
        .brokers
        .iter()
        .map(|broker| {
            let role = if Some(broker.node_id) == cluster.controller_id {
                "controller"
            } else {
                ""
            };
            vec![
                broker.node_id.to_string(),
                broker.host.clone(),
                broker.port.to_string(),
                broker.rack.clone().unwrap_or_else(|| "-".to_string()),
                role.to_string(),
            ]
        })
        .collect();
    out.push_str(&table(&["BROKER", "HOST", "PORT", "RACK", "ROLE"], &rows));
    if let Some(quorum) = quorum {
        out.push('\n');
        let _ = writeln!(
            out,
            "Quorum:      leader {}, epoch {}, committed {}",
            quorum.leader, quorum.epoch, quorum.high_watermark
        );
        out.push('\n');
        let rows: Vec<Vec<String>> = quorum
            .voters
            .iter()
            .map(|(id, log_end)| {
                let lag = if *log_end >= 0 {
                    (quorum.high_watermark - log_end).max(0).to_string()
                } else {
                    "-".to_string()
                };
                vec![id.to_string(), log_end.to_string(), lag]
            })
            .collect();
        out.push_str(&table(&["VOTER", "LOG END", "LAG"], &rows));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cli::{Cli, Command as CliCommand};
    use clap::Parser;
    use sluice_net::client::DELETE_BEFORE_HIGH_WATERMARK;

    /// The invocation of an admin command line; the error is clap's.
    fn parse(line: &str) -> Result<Invocation, clap::Error> {
        let words = std::iter::once("sluice").chain(line.split_whitespace());
        match Cli::try_parse_from(words)?.command {
            Some(CliCommand::Topic(args)) => Ok(args.invocation()),
            Some(CliCommand::Group(args)) => Ok(args.invocation()),
            Some(CliCommand::Txn(args)) => Ok(args.invocation()),
            Some(CliCommand::Cluster(args)) => Ok(args.invocation()),
            other => panic!("{line}: not an admin command: {other:?}"),
        }
    }

    fn run(line: &str) -> Invocation {
        parse(line).unwrap_or_else(|error| panic!("{line}: {error}"))
    }

    #[test]
    fn parses_trim() {
        assert_eq!(
            run("topic trim t --partition 2 --partition 0 -b h:1 --before 7").command,
            Command::TopicTrim {
                name: "t".into(),
                partitions: Some(vec![0, 2]),
                before: 7
            }
        );
        assert_eq!(
            run("topic trim t --all-partitions --before latest").command,
            Command::TopicTrim {
                name: "t".into(),
                partitions: None,
                before: DELETE_BEFORE_HIGH_WATERMARK
            }
        );
        for refused in [
            "topic trim t --partition 0",
            "topic trim t --before 1",
            "topic trim t --partition 0 --all-partitions --before 1",
            "topic trim t --partition -1 --before 1",
            "topic trim t --partition 0 --before -1",
            "topic trim t --partition 0 --before 1 --before 2",
        ] {
            assert!(parse(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn parses_create_with_every_option() {
        let invocation = run("topic create orders --partitions 3 --replication-factor=1 \
             --config retention.ms=1000 --config cleanup.policy=compact --bootstrap h:1 --json");
        assert_eq!(invocation.bootstrap, "h:1");
        assert!(invocation.json);
        let expected = NewTopic {
            name: "orders".into(),
            partitions: Some(3),
            replication_factor: Some(1),
            configs: vec![
                ("retention.ms".into(), "1000".into()),
                ("cleanup.policy".into(), "compact".into()),
            ],
        };
        assert_eq!(invocation.command, Command::TopicCreate(expected));
    }

    #[test]
    fn parses_alter_config_and_defaults() {
        let invocation = run("topic alter-config t --set a=1 --delete b");
        assert_eq!(invocation.bootstrap, BOOTSTRAP_DEFAULT);
        assert!(!invocation.json);
        let changes = vec![
            ConfigChange::Set {
                name: "a".into(),
                value: "1".into(),
            },
            ConfigChange::Delete { name: "b".into() },
        ];
        assert_eq!(
            invocation.command,
            Command::TopicAlterConfig {
                name: "t".into(),
                changes
            }
        );
        assert_eq!(run("cluster info").command, Command::ClusterInfo);
    }

    #[test]
    fn parses_group_commands() {
        assert_eq!(
            run("group list --state Empty --state=Stable").command,
            Command::GroupList {
                states: vec!["Empty".into(), "Stable".into()]
            }
        );
        assert_eq!(
            run("group describe g1 --json").command,
            Command::GroupDescribe { group: "g1".into() }
        );
        assert_eq!(
            run("group reset-offsets g1 --topic t --to-earliest --execute").command,
            Command::GroupResetOffsets {
                group: "g1".into(),
                topic: "t".into(),
                target: ResetTarget::Earliest,
                execute: true,
            }
        );
        assert_eq!(
            run("group reset-offsets g1 --to-datetime 1700000000000 --topic t").command,
            Command::GroupResetOffsets {
                group: "g1".into(),
                topic: "t".into(),
                target: ResetTarget::Datetime(1_700_000_000_000),
                execute: false,
            }
        );
    }

    #[test]
    fn parses_reassignment_commands() {
        assert_eq!(
            run("topic reassign orders --partition 3 --replicas 4,2,3 --wait").command,
            Command::TopicReassign {
                name: "orders".into(),
                partition: 3,
                replicas: Some(vec![4, 2, 3]),
                wait: true,
            }
        );
        assert_eq!(
            run("topic reassign orders --cancel --partition=0").command,
            Command::TopicReassign {
                name: "orders".into(),
                partition: 0,
                replicas: None,
                wait: false,
            }
        );
        assert_eq!(
            run("topic reassignments").command,
            Command::TopicReassignments { name: None }
        );
        assert_eq!(
            run("topic reassignments orders --json").command,
            Command::TopicReassignments {
                name: Some("orders".into())
            }
        );
        assert_eq!(
            run("cluster rebalance").command,
            Command::ClusterRebalance {
                topic: None,
                dry_run: false,
                wait: false,
            }
        );
        assert_eq!(
            run("cluster rebalance --topic orders --wait").command,
            Command::ClusterRebalance {
                topic: Some("orders".into()),
                dry_run: false,
                wait: true,
            }
        );
        assert_eq!(
            run("cluster rebalance --dry-run").command,
            Command::ClusterRebalance {
                topic: None,
                dry_run: true,
                wait: false,
            }
        );
    }

    #[test]
    fn parses_elect_leaders() {
        assert_eq!(
            run("cluster elect-leaders").command,
            Command::ClusterElectLeaders {
                election: ElectionType::Preferred,
                topic: None,
                partition: None,
            }
        );
        assert_eq!(
            run("cluster elect-leaders --type unclean --topic orders --partition=2 --json").command,
            Command::ClusterElectLeaders {
                election: ElectionType::Unclean,
                topic: Some("orders".into()),
                partition: Some(2),
            }
        );
        assert_eq!(
            run("cluster elect-leaders --type=preferred --topic orders").command,
            Command::ClusterElectLeaders {
                election: ElectionType::Preferred,
                topic: Some("orders".into()),
                partition: None,
            }
        );
    }

    #[test]
    fn rejects_bad_command_lines() {
        for line in [
            "topic",
            "topic frobnicate x",
            "topic create",
            "topic create a b",
            "topic create a --partitions 0",
            "topic create a --partitions",
            "topic create a --config novalue",
            "topic list extra",
            "topic list --partitions 3",
            "topic alter-config a",
            "cluster status",
            "group describe",
            "group list extra",
            "group reset-offsets g --to-earliest",
            "group reset-offsets g --topic t",
            "group reset-offsets g --topic t --to-earliest --to-latest",
            "group reset-offsets g --topic t --to-offset -1",
            "group reset-offsets g --topic t --to-offset x",
            "group delete a --execute",
            "topic reassign t --replicas 1,2",
            "topic reassign t --partition 0",
            "topic reassign t --partition 0 --replicas 1,2 --cancel",
            "topic reassign t --partition -1 --replicas 1",
            "topic reassign t --partition 0 --replicas 1,1",
            "topic reassign t --partition 0 --replicas 1,,2",
            "topic reassign t --partition 0 --replicas -3",
            "topic reassign --partition 0 --replicas 1",
            "topic reassignments a b",
            "topic reassignments --wait",
            "cluster rebalance extra",
            "cluster rebalance --dry-run --wait",
            "cluster rebalance --partition 1",
            "cluster elect-leaders extra",
            "cluster elect-leaders --type dirty",
            "cluster elect-leaders --partition 0",
            "cluster elect-leaders --topic t --partition -1",
            "cluster elect-leaders --topic t --partition x",
            "cluster elect-leaders --topic=",
            "cluster elect-leaders --wait",
        ] {
            assert!(parse(line).is_err(), "{line}");
        }
        let help = parse("topic create --help").map(|_| ()).unwrap_err();
        assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
    }

    #[test]
    fn table_aligns_columns() {
        let rows = vec![
            vec!["a".to_string(), "1".to_string()],
            vec!["long".into(), "22".into()],
        ];
        assert_eq!(table(&["NAME", "N"], &rows), "NAME  N\na     1\nlong  22\n");
    }
}
