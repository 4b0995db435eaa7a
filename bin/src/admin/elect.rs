//! `sluice cluster elect-leaders`: leader elections over ElectLeaders
//! (KIP-183 preferred, KIP-460 unclean), like Kafka's
//! `kafka-leader-election.sh`.
//!
//! The partitions are always named in the request: those of `--topic` (or
//! the one `--partition`), or every partition of every topic from the
//! metadata. Asking for "all" with a null list would be shorter, but Kafka
//! then leaves out the partitions that need no election, and the command
//! reports every partition it was asked about.
//!
//! ELECTION_NOT_NEEDED is what a partition that already has the leader the
//! election would give it answers: not an error. Any other refusal is, and
//! the command exits with status 1 after printing every partition's result.

use std::fmt::Write as _;

use serde_json::{json, Value};
use sluice_net::client::admin::{ElectionResult, ElectionType};
use sluice_net::client::{Admin, ClientError, KafkaError};

use super::{emit, json_text, reassign, table};

/// Kafka's ELECTION_NOT_NEEDED error code.
const ELECTION_NOT_NEEDED: i16 = 84;

/// Error codes of ElectLeaders that the client's table of names lacks, so
/// that a result still prints a name.
const ELECTION_ERROR_NAMES: &[(i16, &str)] = &[
    (80, "PREFERRED_LEADER_NOT_AVAILABLE"),
    (83, "ELIGIBLE_LEADERS_NOT_AVAILABLE"),
    (ELECTION_NOT_NEEDED, "ELECTION_NOT_NEEDED"),
];

/// Kafka's name for an error code, the election codes included.
fn error_name(error: &KafkaError) -> &'static str {
    ELECTION_ERROR_NAMES
        .iter()
        .find(|(code, _)| *code == error.code)
        .map_or(error.name(), |(_, name)| name)
}

/// A refusal as `NAME (code): message`, naming the election codes and the
/// reassignment codes the client's table does not know.
pub(super) fn refusal_text(error: &KafkaError) -> String {
    if !ELECTION_ERROR_NAMES
        .iter()
        .any(|(code, _)| *code == error.code)
    {
        return reassign::refusal_text(error);
    }
    match &error.message {
        Some(message) => format!("{} ({}): {message}", error_name(error), error.code),
        None => format!("{} ({})", error_name(error), error.code),
    }
}

/// The partitions to elect leaders for: the one named, those of `topic`,
/// or every partition of every topic.
fn partitions(
    admin: &mut Admin,
    topic: Option<&str>,
    partition: Option<i32>,
) -> Result<Vec<(String, i32)>, ClientError> {
    let topics = match (topic, partition) {
        // Not checked against the metadata: the controller's answer for a
        // partition that does not exist is the one to show.
        (Some(name), Some(index)) => return Ok(vec![(name.to_string(), index)]),
        (Some(name), None) => vec![admin.describe_topic(name)?],
        (None, _) => admin.metadata(None)?.topics,
    };
    let mut partitions: Vec<(String, i32)> = topics
        .iter()
        .filter(|topic| topic.error.is_none())
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(|partition| (topic.name.clone(), partition.partition))
        })
        .collect();
    partitions.sort();
    Ok(partitions)
}

/// How the results add up.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    elected: usize,
    not_needed: usize,
    failed: usize,
}

fn tally(results: &[ElectionResult]) -> Tally {
    let mut tally = Tally::default();
    for result in results {
        match &result.result {
            Ok(()) => tally.elected += 1,
            Err(error) if error.code == ELECTION_NOT_NEEDED => tally.not_needed += 1,
            Err(_) => tally.failed += 1,
        }
    }
    tally
}

/// `sluice cluster elect-leaders`: runs the elections and prints what each
/// partition did; fails (after printing) when one was refused for another
/// reason than ELECTION_NOT_NEEDED.
pub(super) fn cluster_elect_leaders(
    admin: &mut Admin,
    election: ElectionType,
    topic: Option<&str>,
    partition: Option<i32>,
    json: bool,
) -> Result<String, ClientError> {
    let asked = partitions(admin, topic, partition)?;
    let results = if asked.is_empty() {
        Vec::new()
    } else {
        let refs: Vec<(&str, i32)> = asked
            .iter()
            .map(|(topic, partition)| (topic.as_str(), *partition))
            .collect();
        admin.elect_leaders(election, Some(&refs))?
    };
    let counts = tally(&results);
    let out = results_text(election, &results, &counts, json);
    let failure = results.iter().find_map(|result| match &result.result {
        Err(error) if error.code != ELECTION_NOT_NEEDED => Some((result, error)),
        _ => None,
    });
    let Some((first, error)) = failure else {
        return Ok(out);
    };
    // Every partition's result is worth showing before the error.
    emit(&out);
    let why = error.message.as_deref().unwrap_or("no message");
    Err(ClientError::Broker(KafkaError::new(
        error.code,
        Some(format!(
            "{} of {} election(s) failed; the first, {}-{}: {why}",
            counts.failed,
            results.len(),
            first.topic,
            first.partition
        )),
    )))
}

fn results_text(
    election: ElectionType,
    results: &[ElectionResult],
    counts: &Tally,
    json: bool,
) -> String {
    if json {
        let list: Vec<Value> = results
            .iter()
            .map(|result| {
                let error = result.result.as_ref().err().map(|error| {
                    json!({
                        "code": error.code,
                        "name": error_name(error),
                        "message": error.message,
                    })
                });
                json!({
                    "topic": result.topic,
                    "partition": result.partition,
                    "elected": result.result.is_ok(),
                    "error": error,
                })
            })
            .collect();
        return json_text(&json!({
            "election_type": election.name(),
            "results": list,
            "elected": counts.elected,
            "not_needed": counts.not_needed,
            "failed": counts.failed,
        }));
    }
    if results.is_empty() {
        return "No partitions to elect leaders for.\n".to_string();
    }
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|result| {
            vec![
                result.topic.clone(),
                result.partition.to_string(),
                match &result.result {
                    Ok(()) => "elected".to_string(),
                    Err(error) => refusal_text(error),
                },
            ]
        })
        .collect();
    let mut out = table(&["TOPIC", "PARTITION", "RESULT"], &rows);
    let _ = writeln!(
        out,
        "\n{} election: {} leader(s) elected, {} partition(s) needed none, {} failed.",
        election.name(),
        counts.elected,
        counts.not_needed,
        counts.failed
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(partition: i32, code: i16) -> ElectionResult {
        ElectionResult {
            topic: "t".into(),
            partition,
            result: KafkaError::check(code, (code != 0).then(|| "why".to_string())),
        }
    }

    #[test]
    fn not_needed_is_counted_apart_from_failures() {
        let results = [result(0, 0), result(1, 84), result(2, 80), result(3, 84)];
        assert_eq!(
            tally(&results),
            Tally {
                elected: 1,
                not_needed: 2,
                failed: 1
            }
        );
        let text = results_text(ElectionType::Preferred, &results, &tally(&results), false);
        assert!(text.contains("elected"), "{text}");
        assert!(text.contains("ELECTION_NOT_NEEDED (84): why"), "{text}");
        assert!(
            text.contains("PREFERRED_LEADER_NOT_AVAILABLE (80): why"),
            "{text}"
        );
        assert!(text.contains("1 leader(s) elected, 2 partition(s) needed none, 1 failed"));
    }

    #[test]
    fn json_names_every_error() {
        let results = [result(0, 0), result(1, 83)];
        let text = results_text(ElectionType::Unclean, &results, &tally(&results), true);
        let value: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(value["election_type"], "unclean");
        assert_eq!(value["results"][0]["elected"], true);
        assert_eq!(value["results"][0]["error"], Value::Null);
        assert_eq!(
            value["results"][1]["error"]["name"],
            "ELIGIBLE_LEADERS_NOT_AVAILABLE"
        );
        assert_eq!(value["failed"], 1);
    }

    #[test]
    fn other_codes_keep_their_names() {
        let error = KafkaError::new(3, Some("no such topic as x".into()));
        assert_eq!(
            refusal_text(&error),
            "UNKNOWN_TOPIC_OR_PARTITION (3): no such topic as x"
        );
    }
}
