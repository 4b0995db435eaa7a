//! Incremental fetch sessions (KIP-227).
//!
//! A consumer or follower reading thousands of partitions would otherwise
//! list every one of them in every request, and be answered about every one
//! of them, with or without news. With a session the broker remembers what
//! the client asks for and what it last told it: an incremental request
//! names only the partitions whose fetch position changed, and its answer
//! names only the partitions with records, an error, or a changed high
//! watermark, last stable offset or log start offset.
//!
//! Sessions live on the shard that owns the connection: each shard has its
//! own cache and no session state crosses shards. A client that reconnects
//! and lands on another shard gets FETCH_SESSION_ID_NOT_FOUND and opens a new
//! session with a full request, as it would after Kafka evicted its session.
//!
//! The rules follow Kafka's: epoch -1 is a sessionless request (and closes
//! a named session), epoch 0 a full request that opens a session (closing a
//! named one), a higher epoch an incremental request of session `id`, whose
//! epoch must be the one the broker expects. Partitions that were answered
//! move to the back of the session's order, so that a response size limit
//! does not always favour the same partitions.
//!
//! Every incremental request reads every partition of its session, so the
//! per-partition cost of a request is what a consumer of thousands of
//! partitions pays on every fetch: a partition keeps its place in the
//! session for as long as it stays in it, the answer order is a list of
//! places, and an answer is matched to its partition by position, not by
//! looking up its name. (Looked up by name and re-indexed after every
//! answer, the sessions of two consumers of 10,000 partitions took 23 % of
//! the broker's time.)

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::errors::code;

/// Sessions one shard keeps at once: Kafka's
/// `max.incremental.fetch.session.cache.slots` default, per shard.
pub const FETCH_SESSIONS_PER_SHARD_MAX: usize = 1000;
/// Partitions all sessions of one shard hold together (about 100 bytes
/// each): the memory bound Kafka's slot count alone does not give when
/// sessions hold thousands of partitions. A session that does not fit is
/// not opened; its client goes on with full requests.
pub const FETCH_SESSION_PARTITIONS_PER_SHARD_MAX: usize = 500_000;
/// A session unused for this long may be evicted for any new one: Kafka's
/// `min.incremental.fetch.session.eviction.ms` default.
pub const FETCH_SESSION_EVICTION_IDLE: Duration = Duration::from_secs(120);

/// The epoch of a sessionless request (or one that closes its session).
pub const FINAL_EPOCH: i32 = -1;
/// The epoch of a full request that opens a session.
pub const INITIAL_EPOCH: i32 = 0;

/// How a request names a topic: by id from Fetch v13, by name before.
/// A name is shared by all of a topic's partitions in a request and a
/// session: cloning it is a count, not a copy.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TopicRef {
    Id([u8; 16]),
    Name(Rc<str>),
}

impl TopicRef {
    /// Whether both name the same topic; partitions of one topic share
    /// one name, so the comparison seldom reads the bytes.
    pub fn same(&self, other: &TopicRef) -> bool {
        match (self, other) {
            (TopicRef::Name(a), TopicRef::Name(b)) => Rc::ptr_eq(a, b) || a == b,
            (a, b) => a == b,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PartitionKey {
    pub topic: TopicRef,
    pub partition: i32,
}

/// What a client asks of one partition; a session keeps it between
/// requests.
#[derive(Clone, Debug, PartialEq)]
pub struct Wanted {
    pub key: PartitionKey,
    pub fetch_offset: i64,
    pub max_bytes: i32,
    pub current_leader_epoch: i32,
    /// The high watermark a follower says it holds (v18), `i64::MAX` when
    /// not said.
    pub follower_high_watermark: i64,
}

/// What one partition's answer held, as far as a session cares.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Answer {
    pub error_code: i16,
    pub has_records: bool,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
}

/// What the client was last told of a partition.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Told {
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
}

impl Told {
    /// Nothing told yet: any answer differs.
    const NOTHING: Told = Told {
        high_watermark: -1,
        last_stable_offset: -1,
        log_start_offset: -1,
    };
}

struct Cached {
    wanted: Wanted,
    told: Told,
}

struct Session {
    /// The epoch the next incremental request must carry.
    epoch: i32,
    /// Tells this session from an earlier one that had the same id.
    generation: u64,
    uses_topic_ids: bool,
    /// Sessions of followers: evicted only for other followers' sessions.
    privileged: bool,
    last_used: Instant,
    /// The partitions, each at a place it keeps while it is in the session.
    partitions: Vec<Cached>,
    /// Answer order, as places in `partitions`: partitions move to the back
    /// once answered.
    order: Vec<usize>,
    /// Place of each partition, for the partitions a request names.
    index: HashMap<PartitionKey, usize>,
}

impl Session {
    fn new(partitions: Vec<Cached>, generation: u64, uses_topic_ids: bool) -> Session {
        let mut session = Session {
            epoch: next_epoch(INITIAL_EPOCH),
            generation,
            uses_topic_ids,
            privileged: false,
            last_used: Instant::now(),
            order: (0..partitions.len()).collect(),
            index: HashMap::with_capacity(partitions.len()),
            partitions,
        };
        session.reindex();
        session
    }

    fn reindex(&mut self) {
        self.index.clear();
        for (place, cached) in self.partitions.iter().enumerate() {
            self.index.insert(cached.wanted.key.clone(), place);
        }
    }

    /// Drops the partitions of `gone`; the others keep their order.
    fn forget(&mut self, gone: &[PartitionKey]) {
        let gone: std::collections::HashSet<&PartitionKey> = gone.iter().collect();
        let mut new_place = vec![None; self.partitions.len()];
        let mut kept = 0;
        for (place, cached) in self.partitions.iter().enumerate() {
            if !gone.contains(&cached.wanted.key) {
                new_place[place] = Some(kept);
                kept += 1;
            }
        }
        self.partitions
            .retain(|cached| !gone.contains(&cached.wanted.key));
        self.order = self
            .order
            .iter()
            .filter_map(|&place| new_place.get(place).copied().flatten())
            .collect();
        self.reindex();
    }
}

/// How a request is to be answered.
#[derive(Debug, PartialEq)]
pub enum Plan {
    /// Answer the requested partitions; no session (session id 0).
    Sessionless,
    /// Answer the requested partitions, then try to open a session.
    Full,
    /// Answer from session `id`: read every partition it holds (`wanted`,
    /// in its order) and name only those with news. `answered` takes the
    /// answers with `ticket`, which says which plan they answer.
    Incremental {
        id: i32,
        ticket: Ticket,
        wanted: Vec<Wanted>,
    },
    /// The whole request fails with this error code.
    Error(i16),
}

/// Which plan of which session a set of answers is for: answers are
/// matched to partitions by position, valid only while the session is the
/// one planned (not closed and reopened under the same id) and no later
/// request changed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    generation: u64,
    epoch: i32,
}

/// One shard's sessions.
#[derive(Default)]
pub struct FetchSessions {
    sessions: HashMap<i32, Session>,
    /// Partitions over all sessions.
    partitions: usize,
    /// Sessions opened so far: each one's generation.
    opened: u64,
}

/// The epoch after `epoch`; it wraps to 1 since 0 opens a session.
fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

impl FetchSessions {
    /// Decides how to answer a request of session `id` at `epoch`, applying
    /// an incremental request's changes (`requested` added or updated,
    /// `forgotten` removed) to its session.
    pub fn plan(
        &mut self,
        id: i32,
        epoch: i32,
        uses_topic_ids: bool,
        requested: &[Wanted],
        forgotten: &[PartitionKey],
        now: Instant,
    ) -> Plan {
        if epoch == FINAL_EPOCH || epoch == INITIAL_EPOCH {
            // A full request closes the session it names.
            if id != 0 {
                self.remove(id);
            }
            return if epoch == FINAL_EPOCH {
                Plan::Sessionless
            } else {
                Plan::Full
            };
        }
        let Some(session) = self.sessions.get_mut(&id) else {
            return Plan::Error(code::FETCH_SESSION_ID_NOT_FOUND);
        };
        if session.epoch != epoch {
            return Plan::Error(code::INVALID_FETCH_SESSION_EPOCH);
        }
        if session.uses_topic_ids != uses_topic_ids {
            return Plan::Error(code::FETCH_SESSION_TOPIC_ID_ERROR);
        }
        let before = session.partitions.len();
        let added = requested
            .iter()
            .filter(|wanted| !session.index.contains_key(&wanted.key))
            .count();
        if self.partitions + added > FETCH_SESSION_PARTITIONS_PER_SHARD_MAX {
            // No room to grow: close the session. The sessionless answer
            // tells the client so, and its next request is a full one.
            self.remove(id);
            return Plan::Sessionless;
        }
        for wanted in requested {
            match session.index.get(&wanted.key) {
                Some(&place) => session.partitions[place].wanted = wanted.clone(),
                None => {
                    let place = session.partitions.len();
                    session.index.insert(wanted.key.clone(), place);
                    session.order.push(place);
                    session.partitions.push(Cached {
                        wanted: wanted.clone(),
                        told: Told::NOTHING,
                    });
                }
            }
        }
        if !forgotten.is_empty() {
            session.forget(forgotten);
        }
        let after = session.partitions.len();
        self.partitions = self.partitions + after - before;
        if after == 0 {
            // Kafka closes a session left with nothing to fetch.
            self.remove(id);
            return Plan::Sessionless;
        }
        session.epoch = next_epoch(epoch);
        session.last_used = now;
        let wanted = session
            .order
            .iter()
            .map(|&place| session.partitions[place].wanted.clone())
            .collect();
        let ticket = Ticket {
            generation: session.generation,
            epoch: session.epoch,
        };
        Plan::Incremental { id, ticket, wanted }
    }

    /// Opens a session for a full request that was answered with
    /// `answers` (one per `wanted`), if there is room; returns its id, or 0
    /// when the client is to go on without one.
    pub fn open(
        &mut self,
        wanted: &[Wanted],
        answers: &[Answer],
        uses_topic_ids: bool,
        privileged: bool,
        now: Instant,
    ) -> i32 {
        let size = wanted.len();
        if size == 0 || !self.make_room(size, privileged, now) {
            return 0;
        }
        let id = self.unused_id();
        let partitions: Vec<Cached> = wanted
            .iter()
            .zip(answers)
            .map(|(wanted, answer)| Cached {
                wanted: wanted.clone(),
                told: told_after(Told::NOTHING, answer),
            })
            .collect();
        self.opened += 1;
        let mut session = Session::new(partitions, self.opened, uses_topic_ids);
        session.privileged = privileged;
        session.last_used = now;
        self.partitions += session.partitions.len();
        self.sessions.insert(id, session);
        id
    }

    /// Which answers of an incremental request of session `id` go to the
    /// client (`true` for each one that does); records what it is told and
    /// moves those partitions to the back of the session's order. The
    /// answers are in the order of the plan `ticket` came with.
    pub fn answered(&mut self, id: i32, ticket: Ticket, answers: &[Answer]) -> Vec<bool> {
        let session = self.sessions.get_mut(&id).filter(|session| {
            session.generation == ticket.generation
                && session.epoch == ticket.epoch
                && session.order.len() == answers.len()
        });
        let Some(session) = session else {
            // Closed, evicted or changed while the request waited: tell
            // everything; the client's next request finds out which.
            return vec![true; answers.len()];
        };
        let mut named = Vec::with_capacity(answers.len());
        for (&place, answer) in session.order.iter().zip(answers) {
            let cached = &mut session.partitions[place];
            let now_told = told_after(cached.told, answer);
            let news =
                answer.has_records || answer.error_code != code::NONE || now_told != cached.told;
            cached.told = now_told;
            named.push(news);
        }
        // Answered partitions to the back, each group in its order.
        if named.contains(&true) {
            let mut order = Vec::with_capacity(session.order.len());
            let quiet = session.order.iter().zip(&named).filter(|(_, news)| !**news);
            order.extend(quiet.map(|(&place, _)| place));
            let told = session.order.iter().zip(&named).filter(|(_, news)| **news);
            order.extend(told.map(|(&place, _)| place));
            session.order = order;
        }
        named
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    fn remove(&mut self, id: i32) {
        if let Some(session) = self.sessions.remove(&id) {
            self.partitions -= session.partitions.len();
        }
    }

    /// Frees room for a session of `size` partitions: first sessions idle
    /// longer than `FETCH_SESSION_EVICTION_IDLE`, least recently used
    /// first; then, as Kafka does, the smallest consumer session if the new
    /// one is a follower's or larger. False if there is still no room.
    fn make_room(&mut self, size: usize, privileged: bool, now: Instant) -> bool {
        if size > FETCH_SESSION_PARTITIONS_PER_SHARD_MAX {
            return false;
        }
        let fits = |sessions: &FetchSessions| {
            sessions.sessions.len() < FETCH_SESSIONS_PER_SHARD_MAX
                && sessions.partitions + size <= FETCH_SESSION_PARTITIONS_PER_SHARD_MAX
        };
        while !fits(self) {
            let stale = self
                .sessions
                .iter()
                .filter(|(_, session)| {
                    now.duration_since(session.last_used) >= FETCH_SESSION_EVICTION_IDLE
                })
                .min_by_key(|(_, session)| session.last_used)
                .map(|(id, _)| *id);
            let smaller = || {
                self.sessions
                    .iter()
                    .filter(|(_, session)| !session.privileged)
                    .filter(|(_, session)| privileged || session.partitions.len() < size)
                    .min_by_key(|(_, session)| session.partitions.len())
                    .map(|(id, _)| *id)
            };
            match stale.or_else(smaller) {
                Some(id) => self.remove(id),
                None => return false,
            }
        }
        true
    }

    /// A positive id no session of this shard has.
    fn unused_id(&self) -> i32 {
        loop {
            // The first four bytes of a version 4 uuid are all random.
            let bytes = crate::broker::random_id();
            let id = i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) & i32::MAX;
            if id != 0 && !self.sessions.contains_key(&id) {
                return id;
            }
        }
    }
}

/// What the client knows of a partition once `answer` reaches it. An error
/// forgets the high watermark told, so that the partition is named again
/// once the error is gone (as Kafka does).
fn told_after(told: Told, answer: &Answer) -> Told {
    if answer.error_code != code::NONE {
        return Told {
            high_watermark: -1,
            ..told
        };
    }
    Told {
        high_watermark: answer.high_watermark,
        last_stable_offset: answer.last_stable_offset,
        log_start_offset: answer.log_start_offset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(partition: i32, fetch_offset: i64) -> Wanted {
        Wanted {
            key: PartitionKey {
                topic: TopicRef::Name(Rc::from("t")),
                partition,
            },
            fetch_offset,
            max_bytes: 1024,
            current_leader_epoch: -1,
            follower_high_watermark: i64::MAX,
        }
    }

    fn answer(high_watermark: i64, has_records: bool) -> Answer {
        Answer {
            error_code: code::NONE,
            has_records,
            high_watermark,
            last_stable_offset: high_watermark,
            log_start_offset: 0,
        }
    }

    fn opened(sessions: &mut FetchSessions, count: i32, now: Instant) -> i32 {
        let wanted: Vec<Wanted> = (0..count).map(|p| wanted(p, 0)).collect();
        let answers: Vec<Answer> = (0..count).map(|_| answer(5, true)).collect();
        assert_eq!(
            sessions.plan(0, INITIAL_EPOCH, false, &wanted, &[], now),
            Plan::Full
        );
        sessions.open(&wanted, &answers, false, false, now)
    }

    #[test]
    fn an_incremental_request_reads_the_whole_session_and_names_only_news() {
        let now = Instant::now();
        let mut sessions = FetchSessions::default();
        let id = opened(&mut sessions, 3, now);
        assert_ne!(id, 0);
        // Partition 1 moved on; the others are where they were.
        let plan = sessions.plan(id, 1, false, &[wanted(1, 5)], &[], now);
        let Plan::Incremental {
            wanted: all,
            ticket,
            ..
        } = plan
        else {
            panic!("{plan:?}");
        };
        assert_eq!(all.len(), 3);
        assert_eq!(all[1].fetch_offset, 5);
        // Partition 1 got records, partition 2's high watermark moved.
        let answers = [answer(5, false), answer(7, true), answer(6, false)];
        assert_eq!(sessions.answered(id, ticket, &answers), [false, true, true]);
        // The answered partitions went to the back, in their order.
        let Plan::Incremental {
            wanted: all,
            ticket,
            ..
        } = sessions.plan(id, 2, false, &[], &[], now)
        else {
            panic!("second incremental request");
        };
        let order: Vec<i32> = all.iter().map(|w| w.key.partition).collect();
        assert_eq!(order, [0, 1, 2]);
        // Nothing new: nothing named.
        let answers = [answer(5, false), answer(7, false), answer(6, false)];
        assert_eq!(
            sessions.answered(id, ticket, &answers),
            [false, false, false]
        );
    }

    #[test]
    fn answered_partitions_move_behind_the_others() {
        let now = Instant::now();
        let mut sessions = FetchSessions::default();
        let id = opened(&mut sessions, 3, now);
        let Plan::Incremental { ticket, .. } = sessions.plan(id, 1, false, &[], &[], now) else {
            panic!("incremental");
        };
        let answers = [answer(6, true), answer(5, false), answer(5, false)];
        assert_eq!(
            sessions.answered(id, ticket, &answers),
            [true, false, false]
        );
        let Plan::Incremental { wanted: all, .. } = sessions.plan(id, 2, false, &[], &[], now)
        else {
            panic!("incremental");
        };
        let order: Vec<i32> = all.iter().map(|w| w.key.partition).collect();
        assert_eq!(order, [1, 2, 0]);
    }

    #[test]
    fn answers_to_a_plan_the_session_moved_past_are_all_named_and_change_nothing() {
        let now = Instant::now();
        let mut sessions = FetchSessions::default();
        let id = opened(&mut sessions, 2, now);
        let Plan::Incremental { ticket: stale, .. } = sessions.plan(id, 1, false, &[], &[], now)
        else {
            panic!("incremental");
        };
        let Plan::Incremental { ticket, .. } = sessions.plan(id, 2, false, &[], &[], now) else {
            panic!("incremental");
        };
        let news = [answer(9, true), answer(9, true)];
        assert_eq!(sessions.answered(id, stale, &news), [true, true]);
        // The stale answers were not recorded: the same news is news now.
        assert_eq!(sessions.answered(id, ticket, &news), [true, true]);
        // A session reopened under the same id is another session, even at
        // the same epoch and size.
        let Plan::Incremental { ticket, .. } = sessions.plan(id, 3, false, &[], &[], now) else {
            panic!("incremental");
        };
        let partitions = (0..2)
            .map(|p| Cached {
                wanted: wanted(p, 0),
                told: Told::NOTHING,
            })
            .collect();
        let mut other = Session::new(partitions, ticket.generation + 1, false);
        other.epoch = ticket.epoch;
        sessions.sessions.insert(id, other);
        let quiet = [answer(-1, false), answer(-1, false)];
        assert_eq!(sessions.answered(id, ticket, &quiet), [true, true]);
        let told: Vec<Told> = sessions.sessions[&id]
            .partitions
            .iter()
            .map(|cached| cached.told)
            .collect();
        assert_eq!(told, [Told::NOTHING, Told::NOTHING]);
    }

    #[test]
    fn forgetting_keeps_the_order_of_the_others_and_their_places() {
        let now = Instant::now();
        let mut sessions = FetchSessions::default();
        let id = opened(&mut sessions, 4, now);
        let Plan::Incremental { ticket, .. } = sessions.plan(id, 1, false, &[], &[], now) else {
            panic!("incremental");
        };
        // Partition 0 answered: it goes to the back.
        let answers = [
            answer(6, true),
            answer(5, false),
            answer(5, false),
            answer(5, false),
        ];
        sessions.answered(id, ticket, &answers);
        let gone = [wanted(2, 0).key];
        let Plan::Incremental {
            wanted: all,
            ticket,
            ..
        } = sessions.plan(id, 2, false, &[wanted(3, 8)], &gone, now)
        else {
            panic!("incremental");
        };
        let order: Vec<(i32, i64)> = all
            .iter()
            .map(|w| (w.key.partition, w.fetch_offset))
            .collect();
        assert_eq!(order, [(1, 0), (3, 8), (0, 0)]);
        assert_eq!(sessions.partitions, 3);
        // Answers still reach their own partitions.
        let answers = [answer(5, false), answer(7, false), answer(6, false)];
        assert_eq!(
            sessions.answered(id, ticket, &answers),
            [false, true, false]
        );
    }

    #[test]
    fn session_errors_are_kafkas() {
        let now = Instant::now();
        let mut sessions = FetchSessions::default();
        assert_eq!(
            sessions.plan(42, 1, false, &[], &[], now),
            Plan::Error(code::FETCH_SESSION_ID_NOT_FOUND)
        );
        let id = opened(&mut sessions, 2, now);
        assert_eq!(
            sessions.plan(id, 2, false, &[], &[], now),
            Plan::Error(code::INVALID_FETCH_SESSION_EPOCH)
        );
        assert_eq!(
            sessions.plan(id, 1, true, &[], &[], now),
            Plan::Error(code::FETCH_SESSION_TOPIC_ID_ERROR)
        );
        // A failed request does not move the epoch on.
        assert!(matches!(
            sessions.plan(id, 1, false, &[], &[], now),
            Plan::Incremental { .. }
        ));
        // Epoch -1 closes the session and is answered sessionless.
        assert_eq!(
            sessions.plan(id, FINAL_EPOCH, false, &[], &[], now),
            Plan::Sessionless
        );
        assert_eq!(
            sessions.plan(id, 2, false, &[], &[], now),
            Plan::Error(code::FETCH_SESSION_ID_NOT_FOUND)
        );
        assert!(sessions.is_empty());
        assert_eq!(sessions.partitions, 0);
    }

    #[test]
    fn forgetting_every_partition_closes_the_session() {
        let now = Instant::now();
        let mut sessions = FetchSessions::default();
        let id = opened(&mut sessions, 2, now);
        let keys = [wanted(0, 0).key, wanted(1, 0).key];
        assert_eq!(
            sessions.plan(id, 1, false, &[], &keys, now),
            Plan::Sessionless
        );
        assert!(sessions.is_empty());
        assert_eq!(sessions.partitions, 0);
    }

    #[test]
    fn an_error_is_always_named_and_the_partition_again_once_it_clears() {
        let now = Instant::now();
        let mut sessions = FetchSessions::default();
        let id = opened(&mut sessions, 1, now);
        let failed = Answer {
            error_code: code::NOT_LEADER_OR_FOLLOWER,
            high_watermark: -1,
            ..answer(5, false)
        };
        for epoch in 1..=2 {
            let Plan::Incremental { ticket, .. } = sessions.plan(id, epoch, false, &[], &[], now)
            else {
                panic!("incremental");
            };
            assert_eq!(sessions.answered(id, ticket, &[failed]), [true]);
        }
        let Plan::Incremental { ticket, .. } = sessions.plan(id, 3, false, &[], &[], now) else {
            panic!("incremental");
        };
        // The same high watermark as before the error: named all the same.
        assert_eq!(sessions.answered(id, ticket, &[answer(5, false)]), [true]);
    }

    #[test]
    fn a_full_cache_evicts_idle_then_smaller_consumer_sessions() {
        let start = Instant::now();
        let mut sessions = FetchSessions::default();
        for _ in 0..FETCH_SESSIONS_PER_SHARD_MAX {
            assert_ne!(opened(&mut sessions, 2, start), 0);
        }
        // Same size, nothing idle: no room.
        assert_eq!(opened(&mut sessions, 2, start), 0);
        // A larger one displaces a smaller one.
        assert_ne!(opened(&mut sessions, 3, start), 0);
        assert_eq!(sessions.len(), FETCH_SESSIONS_PER_SHARD_MAX);
        // Once they are idle long enough, any newcomer gets a place.
        let later = start + FETCH_SESSION_EVICTION_IDLE;
        assert_ne!(opened(&mut sessions, 1, later), 0);
        assert_eq!(sessions.len(), FETCH_SESSIONS_PER_SHARD_MAX);
    }

    #[test]
    fn the_partition_bound_holds_over_all_sessions() {
        let now = Instant::now();
        let mut sessions = FetchSessions::default();
        let half = (FETCH_SESSION_PARTITIONS_PER_SHARD_MAX / 2) as i32;
        assert_ne!(opened(&mut sessions, half, now), 0);
        assert_ne!(opened(&mut sessions, half, now), 0);
        // A third as large finds no smaller session to displace.
        assert_eq!(opened(&mut sessions, half, now), 0);
        assert_eq!(sessions.partitions, 2 * half as usize);
    }

    #[test]
    fn epochs_wrap_to_one() {
        assert_eq!(next_epoch(INITIAL_EPOCH), 1);
        assert_eq!(next_epoch(i32::MAX), 1);
    }
}
