//! Brokers that are not voters (observers, as in KRaft): they take no part
//! in Raft and keep no metadata log, but follow the committed image from
//! the voters over the controller port.
//!
//! An observer long-polls one voter with the image version it has; the
//! voter answers when it has applied a newer one, or after
//! [`OBSERVER_FETCH_WAIT`] with nothing new. The answer is the whole image
//! (as the records that rebuild it) the first time on a connection, and
//! after that only the records that changed since the image the connection
//! last carried, so a steady cluster costs a few bytes per poll. The voter
//! also names the quorum's leader, and the observer moves its polling
//! there: the active controller counts the polls as the observer's
//! heartbeats (it fences a broker it has not heard from for the session
//! timeout, exactly as it does a silent voter).
//!
//! An observer's writes (its registration) go to a voter, which proposes
//! them to Raft as its own forwarded proposals; it may only register
//! itself. A registration that would replace another incarnation of its id
//! that is not fenced is judged by the active controller alone, which
//! refuses it while that incarnation has been heard from within the broker
//! session (Kafka's DUPLICATE_BROKER_REGISTRATION): a second process
//! started with a live broker's id is turned away instead of taking the id
//! over and each of the two re-registering in turn, while a broker
//! restarted after a crash gets its id back once the old process's session
//! has run out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::FutureExt;
use sluice_engine::{BrokerInfo, ClusterMetadata};

use crate::codec::{DecodeError, Reader, Writer};
use crate::constants::{
    CONTROLLER_RECONNECT_BACKOFF, OBSERVER_FETCH_GRACE, OBSERVER_FETCH_WAIT,
    OBSERVER_PROPOSE_TIMEOUT,
};
use crate::records::{decode_records, diff_records, encode_records, image_from_records};
use crate::transport::{connect, push_frame, read_frame, Hello};
use crate::{MetadataRecord, Quorum, WriteError};

/// An observer asks for an image newer than the version it names.
pub(crate) const KIND_FETCH: u8 = 5;
/// A voter's answer to [`KIND_FETCH`].
pub(crate) const KIND_IMAGE: u8 = 6;
/// An observer's records to propose.
pub(crate) const KIND_PROPOSE: u8 = 7;
/// A voter's answer to [`KIND_PROPOSE`].
pub(crate) const KIND_PROPOSED: u8 = 8;

/// How an image answer carries the image.
mod form {
    /// Nothing newer than the version asked about.
    pub const UNCHANGED: u8 = 0;
    /// The records that rebuild the whole image.
    pub const WHOLE: u8 = 1;
    /// The records that turn the connection's last image into this one.
    pub const CHANGES: u8 = 2;
}

/// The outcome codes of a proposal's answer.
mod outcome {
    pub const APPLIED: u8 = 0;
    pub const NOT_LEADER: u8 = 1;
    pub const TIMED_OUT: u8 = 2;
    pub const TOO_LARGE: u8 = 3;
    pub const FAILED: u8 = 4;
    pub const DUPLICATE_BROKER: u8 = 5;
}

/// Who an observer is and whom it follows.
pub struct Observing {
    pub node_id: i32,
    /// This process's, named in every connection's hello.
    pub incarnation: u64,
    /// Every voter's node id and controller address.
    pub voters: Vec<(i32, SocketAddr)>,
}

/// A voter's side of one observer connection: what it last sent.
#[derive(Default)]
pub(crate) struct Served {
    last_sent: Option<Arc<ClusterMetadata>>,
}

/// Answers an observer's fetch: waits up to [`OBSERVER_FETCH_WAIT`] for an
/// image newer than the one it has.
pub(crate) async fn answer_fetch(
    quorum: &Quorum,
    served: &mut Served,
    payload: &[u8],
) -> Result<Vec<u8>, DecodeError> {
    let mut reader = Reader::new(payload);
    let known = reader.u64()?;
    reader.finish()?;
    let watched = quorum.clone();
    let newer = quorum
        .changes()
        .wait_for(move || (watched.image().version > known).then_some(()));
    newer
        .or(async { glommio::timer::sleep(OBSERVER_FETCH_WAIT).await })
        .await;
    let image = quorum.image();
    let mut writer = Writer::default();
    writer.i32(quorum.status().leader.unwrap_or(-1));
    writer.u64(image.version);
    if image.version <= known {
        writer.u8(form::UNCHANGED);
        return Ok(writer.bytes);
    }
    match &served.last_sent {
        Some(sent) if sent.version == known => {
            writer.u8(form::CHANGES);
            writer.blob(&encode_records(&diff_records(sent, &image)));
        }
        _ => {
            writer.u8(form::WHOLE);
            writer.blob(&encode_records(&crate::records::image_records(&image)));
        }
    }
    served.last_sent = Some(image);
    Ok(writer.bytes)
}

/// Answers an observer's proposal: only its own registration is taken,
/// and not while another live broker holds its id (see
/// [`duplicate_registration`]).
pub(crate) async fn answer_propose(
    quorum: &Quorum,
    hello: Hello,
    broker_session: Duration,
    payload: &[u8],
) -> Result<Vec<u8>, DecodeError> {
    let from = hello.from;
    let mut reader = Reader::new(payload);
    let records = decode_records(reader.blob()?)?;
    reader.finish()?;
    let own = records.iter().all(
        |record| matches!(record, MetadataRecord::RegisterBroker(broker) if broker.id == from),
    );
    let refused = records.iter().find_map(|record| match record {
        MetadataRecord::RegisterBroker(broker) => {
            duplicate_registration(quorum, broker, broker_session, Instant::now()).err()
        }
        _ => None,
    });
    let result = if !own || records.is_empty() {
        Err(WriteError::Failed(format!(
            "node {from} is not a voter and may only register itself"
        )))
    } else if let Some(refused) = refused {
        Err(refused)
    } else {
        quorum
            .write(records, Instant::now() + OBSERVER_PROPOSE_TIMEOUT)
            .await
    };
    let mut writer = Writer::default();
    match result {
        Ok(index) => {
            writer.u8(outcome::APPLIED);
            writer.u64(index);
        }
        Err(WriteError::NotLeader { leader }) => {
            writer.u8(outcome::NOT_LEADER);
            writer.i32(leader.unwrap_or(-1));
        }
        Err(WriteError::TimedOut) => writer.u8(outcome::TIMED_OUT),
        Err(WriteError::TooLarge { bytes }) => {
            writer.u8(outcome::TOO_LARGE);
            writer.u64(bytes as u64);
        }
        Err(WriteError::Failed(reason)) => {
            writer.u8(outcome::FAILED);
            writer.str(&reason);
        }
        Err(WriteError::DuplicateBroker(reason)) => {
            writer.u8(outcome::DUPLICATE_BROKER);
            writer.str(&reason);
        }
    }
    Ok(writer.bytes)
}

/// Whether `broker`'s registration may be written now. One that replaces
/// another incarnation of its id, not fenced, is judged only on the active
/// controller, the one node that hears every broker (a voter that is not
/// answers NotLeader, and the observer asks the leader): it is refused
/// while that incarnation has been heard from within `broker_session`,
/// counted from no earlier than when this node began leading (a new leader
/// has heard from nobody yet, as when it fences brokers). The leader's own
/// id is always live: it is this process.
fn duplicate_registration(
    quorum: &Quorum,
    broker: &BrokerInfo,
    broker_session: Duration,
    now: Instant,
) -> Result<(), WriteError> {
    let image = quorum.image();
    let Some(registered) = image.brokers.get(&broker.id) else {
        return Ok(());
    };
    if registered.fenced || registered.incarnation == broker.incarnation {
        return Ok(());
    }
    let status = quorum.status();
    let Some(leading_since) = status.leading_since.filter(|_| status.is_leader) else {
        return Err(WriteError::NotLeader {
            leader: status.leader,
        });
    };
    let id = broker.id;
    let endpoint = format!("{}:{}", registered.host, registered.port);
    if quorum.voter_id() == Some(id) {
        return Err(WriteError::DuplicateBroker(format!(
            "node id {id} belongs to a live broker: the active controller itself ({endpoint})"
        )));
    }
    let heard = quorum.incarnation_heard(id, registered.incarnation);
    let since = heard.map_or(leading_since, |heard| heard.max(leading_since));
    let silent = now.saturating_duration_since(since);
    if silent >= broker_session {
        return Ok(());
    }
    Err(WriteError::DuplicateBroker(match heard {
        Some(_) => format!(
            "node id {id} belongs to a live broker ({endpoint}, heard from {} ms ago)",
            silent.as_millis()
        ),
        None => format!(
            "node id {id} is registered to {endpoint}, whose session has not expired yet \
             (the active controller has led for {} ms of the {} ms session)",
            silent.as_millis(),
            broker_session.as_millis()
        ),
    }))
}

/// Sends records to the quorum's leader (or, not knowing it, to a voter,
/// which forwards them through Raft) and waits for them to be applied.
pub(crate) async fn propose(
    observing: &Observing,
    leader: Option<i32>,
    records: &[MetadataRecord],
    deadline: Instant,
) -> Result<u64, WriteError> {
    let Some((_, address)) = leader
        .and_then(|leader| observing.voters.iter().find(|(id, _)| *id == leader))
        .or(observing.voters.first())
        .copied()
    else {
        return Err(WriteError::NotLeader { leader: None });
    };
    let mut payload = Writer::default();
    payload.blob(&encode_records(records));
    let exchange = async {
        let mut stream = connect(address, observing.node_id, Some(observing.incarnation))
            .await
            .map_err(|error| error.to_string())?;
        let answer = exchange(&mut stream, KIND_PROPOSE, &payload.bytes, KIND_PROPOSED).await?;
        decode_proposed(&answer).map_err(|error| error.to_string())
    };
    let timeout = async {
        glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
        Err("timed out".to_string())
    };
    match exchange.or(timeout).await {
        Ok(result) => result,
        Err(reason) => {
            tracing::debug!(%address, %reason, "sending a metadata write to a voter failed");
            Err(WriteError::TimedOut)
        }
    }
}

fn decode_proposed(bytes: &[u8]) -> Result<Result<u64, WriteError>, DecodeError> {
    let mut reader = Reader::new(bytes);
    let result = match reader.u8()? {
        outcome::APPLIED => Ok(reader.u64()?),
        outcome::NOT_LEADER => {
            let leader = reader.i32()?;
            Err(WriteError::NotLeader {
                leader: (leader >= 0).then_some(leader),
            })
        }
        outcome::TIMED_OUT => Err(WriteError::TimedOut),
        outcome::TOO_LARGE => Err(WriteError::TooLarge {
            bytes: usize::try_from(reader.u64()?).unwrap_or(usize::MAX),
        }),
        outcome::FAILED => Err(WriteError::Failed(reader.str()?)),
        outcome::DUPLICATE_BROKER => Err(WriteError::DuplicateBroker(reader.str()?)),
        other => return Err(DecodeError(format!("unknown proposal outcome {other}"))),
    };
    reader.finish()?;
    Ok(result)
}

/// Sends one frame and reads the answer, which must be of kind `answer`.
async fn exchange(
    stream: &mut crate::stream::Conn,
    kind: u8,
    payload: &[u8],
    answer: u8,
) -> Result<Vec<u8>, String> {
    let mut frame = Vec::with_capacity(payload.len() + 8);
    push_frame(&mut frame, kind, payload);
    crate::transport::write_frames(stream, &frame)
        .await
        .map_err(|error| error.to_string())?;
    match read_frame(stream).await? {
        Some((got, bytes)) if got == answer => Ok(bytes),
        Some((got, _)) => Err(format!("answered with frame kind {got}, not {answer}")),
        None => Err("closed the connection without answering".into()),
    }
}

/// An image answer, decoded.
struct ImageAnswer {
    leader: Option<i32>,
    version: u64,
    form: u8,
    records: Vec<MetadataRecord>,
}

fn decode_image(bytes: &[u8]) -> Result<ImageAnswer, DecodeError> {
    let mut reader = Reader::new(bytes);
    let leader = reader.i32()?;
    let version = reader.u64()?;
    let form = reader.u8()?;
    let records = match form {
        form::UNCHANGED => Vec::new(),
        form::WHOLE | form::CHANGES => decode_records(reader.blob()?)?,
        other => return Err(DecodeError(format!("unknown image form {other}"))),
    };
    reader.finish()?;
    Ok(ImageAnswer {
        leader: (leader >= 0).then_some(leader),
        version,
        form,
        records,
    })
}

/// The observer's task: polls the voters for the image, forever, moving
/// to the leader they name and to the next voter when one fails.
/// Why a metadata poll brought nothing.
enum PollFailure {
    /// The connection failed or the answer did not come in time.
    Transport(String),
    /// The answer came but does not decode.
    Unreadable(String),
}

pub(crate) async fn follow(quorum: Quorum, observing: std::rc::Rc<Observing>) {
    let voters = &observing.voters;
    if voters.is_empty() {
        return;
    }
    let mut target = 0usize;
    let mut stream: Option<crate::stream::Conn> = None;
    // After a change that did not apply cleanly, ask for the whole image.
    let mut whole = false;
    loop {
        let (voter, address) = voters[target % voters.len()];
        let connected = match stream.as_mut() {
            Some(connected) => connected,
            None => match connect(address, observing.node_id, Some(observing.incarnation)).await {
                Ok(connected) => stream.insert(connected),
                Err(error) => {
                    tracing::debug!(voter, %error, "cannot reach a voter's controller port");
                    target += 1;
                    glommio::timer::sleep(CONTROLLER_RECONNECT_BACKOFF).await;
                    continue;
                }
            },
        };
        let known = if whole { 0 } else { quorum.image().version };
        let mut payload = Writer::default();
        payload.u64(known);
        let sent = std::time::Instant::now();
        let polled = async {
            let bytes = exchange(connected, KIND_FETCH, &payload.bytes, KIND_IMAGE)
                .await
                .map_err(PollFailure::Transport)?;
            decode_image(&bytes).map_err(|error| PollFailure::Unreadable(error.to_string()))
        };
        let timeout = async {
            glommio::timer::sleep(OBSERVER_FETCH_WAIT + OBSERVER_FETCH_GRACE).await;
            Err(PollFailure::Transport("no answer in time".to_string()))
        };
        let answer = match polled.or(timeout).await {
            Ok(answer) => answer,
            Err(failure) => {
                match failure {
                    // Metadata this broker cannot read (a record of a newer
                    // version): it cannot follow the cluster until it is
                    // upgraded, which the operator must hear about.
                    PollFailure::Unreadable(reason) => tracing::error!(
                        voter,
                        %reason,
                        "this broker cannot read the metadata the voters send; upgrade it to the voters' version"
                    ),
                    PollFailure::Transport(reason) => tracing::debug!(
                        voter,
                        %reason,
                        "following the metadata from a voter failed"
                    ),
                }
                stream = None;
                target += 1;
                glommio::timer::sleep(CONTROLLER_RECONNECT_BACKOFF).await;
                continue;
            }
        };
        if answer.leader == Some(voter) {
            quorum.answered_by_leader(sent);
        }
        match answer.form {
            form::UNCHANGED => quorum.observed_leader(answer.leader),
            form::WHOLE => {
                let mut image = image_from_records(&answer.records);
                image.version = answer.version;
                image.controller = answer.leader;
                whole = false;
                quorum.observed(image, answer.leader);
            }
            _ => {
                let mut image = (*quorum.image()).clone();
                let mut clean = true;
                for record in &answer.records {
                    if let Err(reason) = record.apply(&mut image) {
                        tracing::warn!(%reason, "a metadata change did not apply; fetching the whole image");
                        clean = false;
                    }
                }
                if clean {
                    image.version = answer.version;
                    image.controller = answer.leader;
                    quorum.observed(image, answer.leader);
                } else {
                    whole = true;
                }
            }
        }
        if let Some(leader) = answer.leader.filter(|leader| *leader != voter) {
            if let Some(position) = voters.iter().position(|(id, _)| *id == leader) {
                target = position;
                stream = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_decode_and_truncations_are_errors() {
        let mut writer = Writer::default();
        writer.i32(2);
        writer.u64(17);
        writer.u8(form::WHOLE);
        writer.blob(&encode_records(&[MetadataRecord::ClusterId {
            id: "c".into(),
        }]));
        let answer = decode_image(&writer.bytes).unwrap();
        assert_eq!(
            (answer.leader, answer.version, answer.records.len()),
            (Some(2), 17, 1)
        );
        for len in 0..writer.bytes.len() {
            assert!(decode_image(&writer.bytes[..len]).is_err(), "cut at {len}");
        }
        let mut writer = Writer::default();
        writer.u8(outcome::NOT_LEADER);
        writer.i32(-1);
        assert_eq!(
            decode_proposed(&writer.bytes).unwrap(),
            Err(WriteError::NotLeader { leader: None })
        );
        assert!(decode_proposed(&[9]).is_err());
        let mut writer = Writer::default();
        writer.u8(outcome::DUPLICATE_BROKER);
        writer.str("node id 4 belongs to a live broker");
        assert_eq!(
            decode_proposed(&writer.bytes).unwrap(),
            Err(WriteError::DuplicateBroker(
                "node id 4 belongs to a live broker".into()
            ))
        );
    }
}
