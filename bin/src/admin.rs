//! The admin commands (`sluice topic ...`, `sluice cluster ...`): flag
//! parsing and printing over [`sluice_net::client::Admin`], which speaks the
//! Kafka protocol to any Kafka-compatible broker.
//!
//! Output is built into one string and written at the end, so a closed pipe
//! (`sluice topic list | head -1`) is not a panic. Exit status: 0 on success,
//! 1 when the broker refuses or cannot be reached, 2 for usage errors.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

use serde_json::{json, Map, Value};
use sluice_net::broker::base64_url;
use sluice_net::client::{
    Admin, ClientError, ClientOptions, ConfigChange, ConfigResource, ConfigSource, NewTopic,
    OffsetSpec, PartitionOffset,
};

pub const USAGE: &str = "\
ADMIN COMMANDS (Kafka protocol; work against any Kafka-compatible broker):
    sluice topic create NAME [--partitions N] [--replication-factor N] [--config KEY=VALUE ...]
        Creates a topic; partitions and replication factor default to the broker's.
    sluice topic list
        Lists topics with their partition counts and replication factors.
    sluice topic describe NAME
        Shows partitions (leader, replicas, ISR, earliest and latest offsets) and the
        configs set on the topic.
    sluice topic delete NAME
    sluice topic alter-config NAME [--set KEY=VALUE ...] [--delete KEY ...]
        Sets or removes topic config overrides (IncrementalAlterConfigs).
    sluice cluster info
        Shows the cluster id, the controller and the brokers.

    Options of every admin command:
        --bootstrap HOST:PORT   broker to connect to (default 127.0.0.1:9092)
        --json                  print JSON instead of tables
    Exit status: 0 on success, 1 if the broker refuses or cannot be reached, 2 on usage errors.
";

const BOOTSTRAP_DEFAULT: &str = "127.0.0.1:9092";

/// Exit status when the broker refuses a request or cannot be reached.
const EXIT_FAILED: u8 = 1;
/// Exit status for a command line that does not parse.
const EXIT_USAGE: u8 = 2;

/// Whether the arguments name an admin command rather than broker flags.
pub fn is_admin_command(args: &[String]) -> bool {
    matches!(args.first().map(String::as_str), Some("topic" | "cluster"))
}

#[derive(Debug, PartialEq, Eq)]
enum Command {
    TopicCreate(NewTopic),
    TopicList,
    TopicDescribe {
        name: String,
    },
    TopicDelete {
        name: String,
    },
    TopicAlterConfig {
        name: String,
        changes: Vec<ConfigChange>,
    },
    ClusterInfo,
}

#[derive(Debug, PartialEq, Eq)]
struct Invocation {
    bootstrap: String,
    json: bool,
    command: Command,
}

/// What the command line asked for: a command, or the usage text.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    Run(Invocation),
    Help,
}

/// The flags each command takes besides `--bootstrap` and `--json`.
fn command_flags(group: &str, action: &str) -> Option<&'static [&'static str]> {
    match (group, action) {
        ("topic", "create") => Some(&["partitions", "replication-factor", "config"]),
        ("topic", "list" | "describe" | "delete") | ("cluster", "info") => Some(&[]),
        ("topic", "alter-config") => Some(&["set", "delete"]),
        _ => None,
    }
}

fn key_value(flag: &str, text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("--{flag} expects KEY=VALUE, got '{text}'")),
    }
}

fn parse(args: &[String]) -> Result<Parsed, String> {
    if args.iter().any(|arg| arg == "--help" || arg == "-h") {
        return Ok(Parsed::Help);
    }
    let group = args.first().map(String::as_str).unwrap_or_default();
    let Some(action) = args.get(1).map(String::as_str) else {
        return Err(format!("'{group}' needs a subcommand"));
    };
    let allowed = command_flags(group, action)
        .ok_or_else(|| format!("unknown command '{group} {action}'"))?;
    let mut bootstrap = BOOTSTRAP_DEFAULT.to_string();
    let mut json = false;
    let mut positionals: Vec<&str> = Vec::new();
    let mut flags: Vec<(&str, String)> = Vec::new();
    let mut rest = args.iter().skip(2);
    while let Some(arg) = rest.next() {
        let Some(flag) = arg.strip_prefix("--") else {
            positionals.push(arg);
            continue;
        };
        if flag == "json" {
            json = true;
            continue;
        }
        let (name, value) = match flag.split_once('=') {
            Some((name, value)) => (name, value.to_string()),
            None => {
                let value = rest
                    .next()
                    .ok_or_else(|| format!("--{flag} needs a value"))?;
                (flag, value.clone())
            }
        };
        if name == "bootstrap" {
            bootstrap = value;
        } else if allowed.contains(&name) {
            flags.push((name, value));
        } else {
            return Err(format!("'{group} {action}' has no option --{name}"));
        }
    }
    let name = || -> Result<String, String> {
        match positionals.as_slice() {
            [name] if !name.is_empty() => Ok(name.to_string()),
            [] => Err(format!("'{group} {action}' needs a topic name")),
            _ => Err(format!(
                "'{group} {action}' takes one topic name, got {positionals:?}"
            )),
        }
    };
    let no_positionals = || -> Result<(), String> {
        match positionals.first() {
            None => Ok(()),
            Some(extra) => Err(format!("'{group} {action}' takes no argument '{extra}'")),
        }
    };
    let command = match (group, action) {
        ("topic", "create") => {
            let mut topic = NewTopic {
                name: name()?,
                ..NewTopic::default()
            };
            for (flag, value) in flags {
                match flag {
                    "partitions" => {
                        let count = value.parse::<i32>().ok().filter(|count| *count >= 1);
                        topic.partitions = Some(count.ok_or_else(|| {
                            format!("--partitions expects a positive number, got '{value}'")
                        })?);
                    }
                    "replication-factor" => {
                        let factor = value.parse::<i16>().ok().filter(|factor| *factor >= 1);
                        topic.replication_factor = Some(factor.ok_or_else(|| {
                            format!("--replication-factor expects a positive number, got '{value}'")
                        })?);
                    }
                    _ => topic.configs.push(key_value(flag, &value)?),
                }
            }
            Command::TopicCreate(topic)
        }
        ("topic", "list") => {
            no_positionals()?;
            Command::TopicList
        }
        ("topic", "describe") => Command::TopicDescribe { name: name()? },
        ("topic", "delete") => Command::TopicDelete { name: name()? },
        ("topic", "alter-config") => {
            let name = name()?;
            let mut changes = Vec::new();
            for (flag, value) in flags {
                if flag == "set" {
                    let (name, value) = key_value(flag, &value)?;
                    changes.push(ConfigChange::Set { name, value });
                } else if value.is_empty() {
                    return Err("--delete expects a config name".to_string());
                } else {
                    changes.push(ConfigChange::Delete { name: value });
                }
            }
            if changes.is_empty() {
                return Err("'topic alter-config' needs at least one --set or --delete".to_string());
            }
            Command::TopicAlterConfig { name, changes }
        }
        _ => {
            no_positionals()?;
            Command::ClusterInfo
        }
    };
    Ok(Parsed::Run(Invocation {
        bootstrap,
        json,
        command,
    }))
}

/// A failed command: what was being done, and why it failed.
struct Failure {
    doing: String,
    error: ClientError,
}

/// Runs an admin command line (`args` without the program name).
pub fn main(args: &[String]) -> ExitCode {
    let invocation = match parse(args) {
        Ok(Parsed::Run(invocation)) => invocation,
        Ok(Parsed::Help) => {
            emit(USAGE);
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("sluice: {message}\n\n{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match execute(&invocation) {
        Ok(output) => {
            emit(&output);
            ExitCode::SUCCESS
        }
        Err(Failure { doing, error }) => {
            eprintln!("sluice: {doing} failed: {error}");
            ExitCode::from(EXIT_FAILED)
        }
    }
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
        Command::TopicDescribe { name } => format!("describe topic '{name}'"),
        Command::TopicDelete { name } => format!("delete topic '{name}'"),
        Command::TopicAlterConfig { name, .. } => format!("alter configs of topic '{name}'"),
        Command::ClusterInfo => "describe cluster".to_string(),
    }
}

fn execute(invocation: &Invocation) -> Result<String, Failure> {
    let failed = |error| Failure {
        doing: describe_command(&invocation.command),
        error,
    };
    let mut admin =
        Admin::connect(&invocation.bootstrap, ClientOptions::default()).map_err(failed)?;
    let json = invocation.json;
    match &invocation.command {
        Command::TopicCreate(topic) => topic_create(&mut admin, topic, json),
        Command::TopicList => topic_list(&mut admin, json),
        Command::TopicDescribe { name } => topic_describe(&mut admin, name, json),
        Command::TopicDelete { name } => topic_delete(&mut admin, name, json),
        Command::TopicAlterConfig { name, changes } => {
            topic_alter_config(&mut admin, name, changes, json)
        }
        Command::ClusterInfo => cluster_info(&mut admin, json),
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
    for change in changes {
        match change {
            ConfigChange::Set { name, value } => {
                set.insert(name.clone(), json!(value));
            }
            ConfigChange::Delete { name } => deleted.push(name.clone()),
        }
    }
    if json {
        return Ok(json_text(
            &json!({ "topic": name, "set": set, "deleted": deleted }),
        ));
    }
    let mut parts = Vec::new();
    if !set.is_empty() {
        let pairs: Vec<String> = changes
            .iter()
            .filter_map(|change| match change {
                ConfigChange::Set { name, value } => Some(format!("{name}={value}")),
                ConfigChange::Delete { .. } => None,
            })
            .collect();
        parts.push(format!("set {}", pairs.join(", ")));
    }
    if !deleted.is_empty() {
        parts.push(format!("deleted {}", deleted.join(", ")));
    }
    Ok(format!(
        "Altered configs of topic '{name}': {}.\n",
        parts.join("; ")
    ))
}

fn cluster_info(admin: &mut Admin, json: bool) -> Result<String, ClientError> {
    let cluster = admin.describe_cluster()?;
    if json {
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
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    fn run(line: &str) -> Invocation {
        match parse(&args(line)) {
            Ok(Parsed::Run(invocation)) => invocation,
            other => panic!("{line}: {other:?}"),
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
        ] {
            assert!(parse(&args(line)).is_err(), "{line}");
        }
        assert_eq!(parse(&args("topic create --help")), Ok(Parsed::Help));
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
