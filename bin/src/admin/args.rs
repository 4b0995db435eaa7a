//! The admin commands' command line (`sluice topic|group|txn|cluster ...`),
//! declared for clap: each subcommand, its arguments and their help, and
//! the [`Command`] each one becomes. Values are checked as they are parsed,
//! so a bad one is a usage error (exit status 2) naming the flag.

use clap::{Args, Subcommand};
use sluice_net::client::admin::ElectionType;
use sluice_net::client::{ConfigChange, NewTopic, DELETE_BEFORE_HIGH_WATERMARK};

use super::{Command, Invocation, ResetTarget, BOOTSTRAP_DEFAULT};

/// How a client command reaches the broker; every admin, produce, consume
/// and ACL command takes these.
#[derive(Debug, Args)]
pub struct Connection {
    /// Broker(s) to connect to, tried in order.
    #[arg(
        long,
        short = 'b',
        visible_alias = "bootstrap-server",
        value_name = "HOST:PORT[,HOST:PORT...]",
        default_value = BOOTSTRAP_DEFAULT,
        global = true
    )]
    pub bootstrap: String,
    /// Kafka client properties: security.protocol (PLAINTEXT, SASL_PLAINTEXT, SSL or
    /// SASL_SSL), sasl.mechanism, and sasl.jaas.config or sasl.username and
    /// sasl.password; for TLS, ssl.truststore.location (PEM) or ssl.ca.location, and a
    /// client certificate in ssl.keystore.location (PEM) or ssl.certificate.location
    /// and ssl.key.location.
    #[arg(long, value_name = "FILE", global = true)]
    pub command_config: Option<String>,
}

/// The options of every admin command.
#[derive(Debug, Args)]
pub struct AdminOptions {
    #[command(flatten)]
    pub connection: Connection,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `sluice topic|group|txn|cluster ACTION`: the options, and the action.
#[derive(Debug, Args)]
pub struct AdminArgs<A: Subcommand> {
    #[command(flatten)]
    options: AdminOptions,
    #[command(subcommand)]
    action: A,
}

impl<A: Subcommand + Into<Command>> AdminArgs<A> {
    pub fn invocation(self) -> Invocation {
        Invocation {
            bootstrap: self.options.connection.bootstrap,
            command_config: self.options.connection.command_config,
            json: self.options.json,
            command: self.action.into(),
        }
    }
}

/// A name that may not be empty (a topic, a group, a transactional id).
pub(super) fn name(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("expected a name, got an empty one".to_string());
    }
    Ok(text.to_string())
}

/// A partition number: 0 or more.
pub(super) fn partition(text: &str) -> Result<i32, String> {
    text.parse::<i32>()
        .ok()
        .filter(|index| *index >= 0)
        .ok_or_else(|| format!("expected a partition number, got '{text}'"))
}

fn positive_i32(text: &str) -> Result<i32, String> {
    text.parse::<i32>()
        .ok()
        .filter(|count| *count >= 1)
        .ok_or_else(|| format!("expected a positive number, got '{text}'"))
}

fn positive_i16(text: &str) -> Result<i16, String> {
    text.parse::<i16>()
        .ok()
        .filter(|count| *count >= 1)
        .ok_or_else(|| format!("expected a positive number, got '{text}'"))
}

/// `KEY=VALUE`, the key not empty.
pub(super) fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, got '{text}'")),
    }
}

/// The word `--before` takes for "everything committed so far".
const BEFORE_LATEST: &str = "latest";

/// `--before OFFSET|latest` of `topic trim`.
fn trim_before(text: &str) -> Result<i64, String> {
    if text == BEFORE_LATEST {
        return Ok(DELETE_BEFORE_HIGH_WATERMARK);
    }
    text.parse::<i64>()
        .ok()
        .filter(|offset| *offset >= 0)
        .ok_or_else(|| format!("expected an offset >= 0 or '{BEFORE_LATEST}', got '{text}'"))
}

/// Broker ids as `4,2,3`: at least one, none negative, none twice.
#[derive(Clone, Debug)]
pub struct BrokerIds(Vec<i32>);

fn broker_ids(text: &str) -> Result<BrokerIds, String> {
    let mut ids = Vec::new();
    for part in text.split(',') {
        let id = part
            .trim()
            .parse::<i32>()
            .ok()
            .filter(|id| *id >= 0)
            .ok_or_else(|| format!("expected broker ids like 1,2,3, got '{text}'"))?;
        if ids.contains(&id) {
            return Err(format!("names broker {id} twice"));
        }
        ids.push(id);
    }
    Ok(BrokerIds(ids))
}

fn election(text: &str) -> Result<ElectionType, String> {
    match text {
        "preferred" => Ok(ElectionType::Preferred),
        "unclean" => Ok(ElectionType::Unclean),
        _ => Err(format!("expected preferred or unclean, got '{text}'")),
    }
}

/// Topics of a running broker.
#[derive(Debug, Subcommand)]
pub enum TopicAction {
    /// Creates a topic; partitions and replication factor default to the broker's.
    Create {
        /// The topic's name.
        #[arg(value_parser = name)]
        name: String,
        /// Partitions of the topic.
        #[arg(long, value_name = "N", value_parser = positive_i32)]
        partitions: Option<i32>,
        /// Replicas of each partition.
        #[arg(long, value_name = "N", value_parser = positive_i16)]
        replication_factor: Option<i16>,
        /// A topic config (e.g. retention.ms=1000); may be given more than once.
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = key_value)]
        configs: Vec<(String, String)>,
    },
    /// Lists topics with their partition counts and replication factors.
    List,
    /// Shows partitions (leader, replicas, ISR, earliest and latest offsets) and the
    /// configs set on the topic.
    Describe {
        /// The topic's name.
        #[arg(value_parser = name)]
        name: String,
        /// Shows instead each partition's offsets, offset count and size on its
        /// leader's disk (DescribeLogDirs), with the topic's totals.
        #[arg(long)]
        stats: bool,
    },
    /// Deletes a topic.
    Delete {
        /// The topic's name.
        #[arg(value_parser = name)]
        name: String,
    },
    /// Sets or removes topic config overrides (IncrementalAlterConfigs).
    #[command(group(clap::ArgGroup::new("changes").required(true).multiple(true)))]
    AlterConfig {
        /// The topic's name.
        #[arg(value_parser = name)]
        name: String,
        /// Sets a config.
        #[arg(long, value_name = "KEY=VALUE", value_parser = key_value, group = "changes")]
        set: Vec<(String, String)>,
        /// Removes a config override: the broker's default applies again.
        #[arg(long, value_name = "KEY", value_parser = name, group = "changes")]
        delete: Vec<String>,
        /// Adds items (separated by commas) to a list config such as cleanup.policy.
        #[arg(long, value_name = "KEY=VALUE", value_parser = key_value, group = "changes")]
        append: Vec<(String, String)>,
        /// Removes items (separated by commas) from a list config.
        #[arg(long, value_name = "KEY=VALUE", value_parser = key_value, group = "changes")]
        subtract: Vec<(String, String)>,
    },
    /// Removes the records before an offset (DeleteRecords) and prints where each
    /// partition now starts (its low watermark, the earliest offset consumers can read).
    Trim {
        /// The topic's name.
        #[arg(value_parser = name)]
        name: String,
        /// A partition to trim; may be given more than once.
        #[arg(
            long = "partition",
            value_name = "N",
            value_parser = partition,
            required_unless_present = "all_partitions",
            conflicts_with = "all_partitions"
        )]
        partitions: Vec<i32>,
        /// Trims every partition.
        #[arg(long)]
        all_partitions: bool,
        /// The first offset to keep (latest: remove every record written so far); not
        /// past a partition's latest offset.
        #[arg(long, value_name = "OFFSET|latest", value_parser = trim_before)]
        before: i64,
    },
    /// Moves a partition to the given brokers (the first is its preferred leader), or
    /// cancels the move in progress.
    Reassign {
        /// The topic's name.
        #[arg(value_parser = name)]
        name: String,
        /// The partition to move.
        #[arg(long, value_name = "N", value_parser = partition)]
        partition: i32,
        /// The brokers that are to hold the partition.
        #[arg(
            long,
            value_name = "ID,ID,...",
            value_parser = broker_ids,
            required_unless_present = "cancel",
            conflicts_with = "cancel"
        )]
        replicas: Option<BrokerIds>,
        /// Cancels the reassignment in progress.
        #[arg(long)]
        cancel: bool,
        /// Waits until the move has finished and shows the partition's replicas and ISR.
        #[arg(long)]
        wait: bool,
    },
    /// Lists the partition reassignments in progress, with the replicas being added and
    /// removed.
    Reassignments {
        /// Only this topic's.
        #[arg(value_parser = name)]
        name: Option<String>,
    },
}

impl From<TopicAction> for Command {
    fn from(action: TopicAction) -> Command {
        match action {
            TopicAction::Create {
                name,
                partitions,
                replication_factor,
                configs,
            } => Command::TopicCreate(NewTopic {
                name,
                partitions,
                replication_factor,
                configs,
            }),
            TopicAction::List => Command::TopicList,
            TopicAction::Describe { name, stats } => Command::TopicDescribe { name, stats },
            TopicAction::Delete { name } => Command::TopicDelete { name },
            TopicAction::AlterConfig {
                name,
                set,
                delete,
                append,
                subtract,
            } => {
                let set = set
                    .into_iter()
                    .map(|(name, value)| ConfigChange::Set { name, value });
                let delete = delete.into_iter().map(|name| ConfigChange::Delete { name });
                let append = append
                    .into_iter()
                    .map(|(name, value)| ConfigChange::Append { name, value });
                let subtract = subtract
                    .into_iter()
                    .map(|(name, value)| ConfigChange::Subtract { name, value });
                let changes = set.chain(delete).chain(append).chain(subtract).collect();
                Command::TopicAlterConfig { name, changes }
            }
            TopicAction::Trim {
                name,
                mut partitions,
                all_partitions,
                before,
            } => {
                partitions.sort_unstable();
                partitions.dedup();
                Command::TopicTrim {
                    name,
                    partitions: (!all_partitions).then_some(partitions),
                    before,
                }
            }
            TopicAction::Reassign {
                name,
                partition,
                replicas,
                cancel: _,
                wait,
            } => Command::TopicReassign {
                name,
                partition,
                replicas: replicas.map(|BrokerIds(ids)| ids),
                wait,
            },
            TopicAction::Reassignments { name } => Command::TopicReassignments { name },
        }
    }
}

/// Consumer groups of a running broker.
#[derive(Debug, Subcommand)]
pub enum GroupAction {
    /// Lists consumer groups with their states (e.g. Empty, Stable).
    List {
        /// Only groups in this state; may be given more than once.
        #[arg(long = "state", value_name = "STATE")]
        states: Vec<String>,
    },
    /// Shows the group's state, protocol and members, and per partition the committed
    /// offset, the log end offset and the lag.
    Describe {
        /// The group id.
        #[arg(value_parser = name)]
        group: String,
    },
    /// Deletes a group that has no members, with its committed offsets.
    Delete {
        /// The group id.
        #[arg(value_parser = name)]
        group: String,
    },
    /// Shows the new offsets of a topic's partitions; with --execute commits them. The
    /// group must have no members.
    ResetOffsets {
        /// The group id.
        #[arg(value_parser = name)]
        group: String,
        /// The topic whose offsets move.
        #[arg(long, value_parser = name)]
        topic: String,
        #[command(flatten)]
        target: ResetTargetArgs,
        /// Commits the new offsets (without it they are only shown).
        #[arg(long)]
        execute: bool,
    },
}

/// Where `group reset-offsets` moves the offsets: exactly one of these.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ResetTargetArgs {
    /// To each partition's earliest offset.
    #[arg(long)]
    to_earliest: bool,
    /// To each partition's latest offset.
    #[arg(long)]
    to_latest: bool,
    /// To this offset, clamped into each partition's range.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(0..))]
    to_offset: Option<i64>,
    /// To the first record at or after this time (the latest offset where none is).
    #[arg(
        long,
        value_name = "MS_SINCE_EPOCH",
        value_parser = clap::value_parser!(i64).range(0..)
    )]
    to_datetime: Option<i64>,
}

impl ResetTargetArgs {
    fn target(&self) -> ResetTarget {
        match (
            self.to_earliest,
            self.to_latest,
            self.to_offset,
            self.to_datetime,
        ) {
            (true, _, _, _) => ResetTarget::Earliest,
            (_, true, _, _) => ResetTarget::Latest,
            (_, _, Some(offset), _) => ResetTarget::Offset(offset),
            // clap's group makes one of the four present.
            (_, _, _, timestamp) => ResetTarget::Datetime(timestamp.unwrap_or_default()),
        }
    }
}

impl From<GroupAction> for Command {
    fn from(action: GroupAction) -> Command {
        match action {
            GroupAction::List { states } => Command::GroupList { states },
            GroupAction::Describe { group } => Command::GroupDescribe { group },
            GroupAction::Delete { group } => Command::GroupDelete { group },
            GroupAction::ResetOffsets {
                group,
                topic,
                target,
                execute,
            } => Command::GroupResetOffsets {
                group,
                topic,
                target: target.target(),
                execute,
            },
        }
    }
}

/// Transactions of a running broker.
#[derive(Debug, Subcommand)]
pub enum TxnAction {
    /// Lists transactional ids with their producer ids and states (e.g. Ongoing).
    List {
        /// Only transactions in this state; may be given more than once.
        #[arg(long = "state", value_name = "STATE")]
        states: Vec<String>,
    },
    /// Shows the transaction's state, producer id and epoch, timeout, start time and
    /// partitions.
    Describe {
        /// The transactional id.
        #[arg(value_parser = name)]
        id: String,
    },
}

impl From<TxnAction> for Command {
    fn from(action: TxnAction) -> Command {
        match action {
            TxnAction::List { states } => Command::TxnList { states },
            TxnAction::Describe { id } => Command::TxnDescribe { id },
        }
    }
}

/// The cluster: its brokers, where replicas and leaders are.
#[derive(Debug, Subcommand)]
pub enum ClusterAction {
    /// Shows the cluster id, the controller and the brokers.
    Info,
    /// Plans reassignments that spread every topic's replicas and preferred leaders
    /// evenly over the live brokers, moving as few replicas as possible; prints the
    /// plan and starts it.
    Rebalance {
        /// Only this topic's partitions.
        #[arg(long, value_parser = name)]
        topic: Option<String>,
        /// Only prints the plan.
        #[arg(long, conflicts_with = "wait")]
        dry_run: bool,
        /// Waits until every move has finished.
        #[arg(long)]
        wait: bool,
    },
    /// Gives each partition's leadership back to its preferred replica (the first),
    /// when that replica is live and in sync. Prints each partition's result;
    /// ELECTION_NOT_NEEDED (already led as asked) is not an error.
    ElectLeaders {
        /// unclean instead gives a partition with no live in-sync replica to any live
        /// replica, losing the records that replica lacks.
        #[arg(
            long = "type",
            value_name = "preferred|unclean",
            value_parser = election,
            default_value = "preferred"
        )]
        election: ElectionType,
        /// Only this topic's partitions (without it, every partition of every topic).
        #[arg(long, value_parser = name)]
        topic: Option<String>,
        /// Only this partition of the topic.
        #[arg(long, value_name = "N", value_parser = partition, requires = "topic")]
        partition: Option<i32>,
    },
}

impl From<ClusterAction> for Command {
    fn from(action: ClusterAction) -> Command {
        match action {
            ClusterAction::Info => Command::ClusterInfo,
            ClusterAction::Rebalance {
                topic,
                dry_run,
                wait,
            } => Command::ClusterRebalance {
                topic,
                dry_run,
                wait,
            },
            ClusterAction::ElectLeaders {
                election,
                topic,
                partition,
            } => Command::ClusterElectLeaders {
                election,
                topic,
                partition,
            },
        }
    }
}
