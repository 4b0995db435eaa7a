//! Shards: one glommio executor per core, each owning a disjoint set of
//! partitions, talking over bounded cross-shard channels.
//!
//! [`shard_for`] is the one place that decides which shard owns a partition.
//! [`Mesh`] carries typed requests to the owner shard and the answers back:
//! a caller that needs several shards sends one message per shard (not per
//! partition) and awaits the answers; a request for the caller's own shard
//! runs in place without touching a channel.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use glommio::channels::channel_mesh::{Full, MeshBuilder, Receivers, Senders};
use glommio::{LocalExecutorBuilder, Placement};

use crate::constants::{MESH_CHANNEL_CAPACITY, SHARDS_MAX};
use crate::notify::{Signal, Turns};
use crate::types::ShardId;
use crate::wake_watch::{spawn_watched, Timing, WakeWatch};

/// The shard that owns `partition` of `topic`, for `shards` shards.
///
/// Partitions of one topic go round-robin over the shards starting at a
/// shard chosen by the topic name's hash, so a topic's partitions spread
/// evenly and different topics start on different shards.
pub fn shard_for(topic: &str, partition: i32, shards: usize) -> ShardId {
    TopicShards::new(topic, shards).owner(partition)
}

/// [`shard_for`] for many partitions of one topic: the name is hashed once.
#[derive(Clone, Copy, Debug)]
pub struct TopicShards {
    start: u64,
    shards: usize,
}

impl TopicShards {
    pub fn new(topic: &str, shards: usize) -> TopicShards {
        assert!(shards > 0 && shards <= SHARDS_MAX);
        TopicShards {
            start: u64::from(crc32c::crc32c(topic.as_bytes())),
            shards,
        }
    }

    pub fn owner(&self, partition: i32) -> ShardId {
        ShardId(((self.start + partition.max(0) as u64) % self.shards as u64) as u16)
    }
}

/// The shard owning the coordinator for a key (group id, transactional id):
/// the owner of the internal-topic partition the key hashes to.
pub fn coordinator_partition(key: &str, partitions: i32) -> i32 {
    // Kafka uses abs(hashCode) % partitions over the Java string hash; any
    // stable hash works as long as every shard computes the same one.
    (crc32c::crc32c(key.as_bytes()) % partitions.max(1) as u32) as i32
}

/// A message on the mesh: a request for the receiving shard, or the answer
/// to one this shard sent.
pub enum Envelope<Req, Resp> {
    Request {
        id: u64,
        from: ShardId,
        request: Req,
    },
    Response {
        id: u64,
        response: Resp,
    },
}

/// A handler run on the owner shard for each request.
pub type Handler<Req, Resp> = Rc<dyn Fn(Req) -> Pin<Box<dyn Future<Output = Resp>>>>;

struct Pending<Resp> {
    response: Option<Resp>,
    waker: Option<Waker>,
}

/// Removes a call's entry from the pending map when the call ends.
struct PendingEntry<'a, Resp> {
    pending: &'a RefCell<HashMap<u64, Pending<Resp>>>,
    id: u64,
}

impl<Resp> Drop for PendingEntry<'_, Resp> {
    fn drop(&mut self) {
        if let Ok(mut pending) = self.pending.try_borrow_mut() {
            pending.remove(&self.id);
        }
    }
}

/// This shard's end of the mesh.
pub struct Mesh<Req: Send + 'static, Resp: Send + 'static> {
    shard: ShardId,
    shards: usize,
    senders: Senders<Envelope<Req, Resp>>,
    /// Calls awaiting their answer, by id. Kept in the map itself (not
    /// behind an `Rc` each): a call then costs no allocation of its own.
    pending: RefCell<HashMap<u64, Pending<Resp>>>,
    next_id: Cell<u64>,
    /// Per target shard, the order in which calls may put their request on
    /// the channel: the order they were made. A call that finds the channel
    /// full waits; without turns, a later call could find room first and
    /// overtake it, and requests of one connection would reach their shard
    /// out of order.
    send_turns: Vec<Turns>,
    handler: RefCell<Option<Handler<Req, Resp>>>,
    /// Notified when the handler is installed: receive loops hold a request
    /// that arrived before it (a peer may call as soon as it has joined).
    handler_installed: Signal,
}

/// What every shard needs to join the mesh; clone one into each executor.
pub type MeshPlan<Req, Resp> = MeshBuilder<Envelope<Req, Resp>, Full>;

pub fn mesh_plan<Req: Send + 'static, Resp: Send + 'static>(shards: usize) -> MeshPlan<Req, Resp> {
    MeshBuilder::full(shards, MESH_CHANNEL_CAPACITY)
}

impl<Req: Send + 'static, Resp: Send + 'static> Mesh<Req, Resp> {
    /// Joins the mesh (every shard must join before any returns) and starts
    /// the receive loops. Requests wait until `set_handler` is called.
    pub async fn join(plan: MeshPlan<Req, Resp>) -> Result<Rc<Mesh<Req, Resp>>, String> {
        let shards = plan.nr_peers();
        let (senders, mut receivers): (_, Receivers<Envelope<Req, Resp>>) = plan
            .join()
            .await
            .map_err(|error| format!("joining the shard mesh failed: {error}"))?;
        let shard = ShardId(senders.peer_id() as u16);
        let mesh = Rc::new(Mesh {
            shard,
            shards,
            senders,
            pending: RefCell::new(HashMap::new()),
            next_id: Cell::new(0),
            send_turns: (0..shards).map(|_| Turns::new()).collect(),
            handler: RefCell::new(None),
            handler_installed: Signal::new(),
        });
        for (_, stream) in receivers.streams() {
            let mesh = Rc::downgrade(&mesh);
            glommio::spawn_local(async move {
                while let Some(envelope) = stream.recv().await {
                    if matches!(envelope, Envelope::Request { .. }) {
                        // A request that beats `set_handler` waits for it
                        // instead of being dropped (its caller would wait
                        // forever). The channel stays bounded meanwhile:
                        // this loop pulls nothing else until then.
                        let Some(signal) = mesh.upgrade().map(|m| m.handler_installed.clone())
                        else {
                            return;
                        };
                        let waiting = mesh.clone();
                        signal
                            .wait_for(move || match waiting.upgrade() {
                                Some(mesh) => mesh.handler.borrow().is_some().then_some(()),
                                None => Some(()),
                            })
                            .await;
                    }
                    let Some(mesh) = mesh.upgrade() else { return };
                    mesh.receive(envelope);
                }
            })
            .detach();
        }
        Ok(mesh)
    }

    pub fn shard(&self) -> ShardId {
        self.shard
    }

    pub fn shards(&self) -> usize {
        self.shards
    }

    /// Installs the function that serves requests sent to this shard.
    pub fn set_handler(&self, handler: Handler<Req, Resp>) {
        *self.handler.borrow_mut() = Some(handler);
        self.handler_installed.notify();
    }

    fn receive(self: &Rc<Self>, envelope: Envelope<Req, Resp>) {
        match envelope {
            Envelope::Request { id, from, request } => {
                let Some(handler) = self.handler.borrow().clone() else {
                    tracing::error!("mesh request arrived before the shard installed its handler");
                    return;
                };
                let mesh = Rc::clone(self);
                glommio::spawn_local(async move {
                    let response = handler(request).await;
                    let reply = Envelope::Response { id, response };
                    if mesh.senders.send_to(from.0 as usize, reply).await.is_err() {
                        tracing::warn!(shard = %from, "mesh reply dropped: peer gone");
                    }
                })
                .detach();
            }
            Envelope::Response { id, response } => {
                // Not there: the call was dropped (its guard took its
                // entry out), and the answer goes with it.
                let waker = match self.pending.borrow_mut().get_mut(&id) {
                    Some(slot) => {
                        slot.response = Some(response);
                        slot.waker.take()
                    }
                    None => return,
                };
                if let Some(waker) = waker {
                    waker.wake();
                }
            }
        }
    }

    /// Runs `request` on `shard` and returns its answer. `None` if the shard
    /// is gone (shutdown).
    pub async fn call(&self, shard: ShardId, request: Req) -> Option<Resp> {
        if shard == self.shard {
            let handler = self.handler.borrow().clone()?;
            return Some(handler(request).await);
        }
        // Taken before the first await: the call's place in line.
        let turn = self.send_turns[shard.0 as usize].take();
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        self.pending.borrow_mut().insert(
            id,
            Pending {
                response: None,
                waker: None,
            },
        );
        // Takes the entry out however the call ends: answered, refused,
        // or dropped while it waits.
        let _entry = PendingEntry {
            pending: &self.pending,
            id,
        };
        let envelope = Envelope::Request {
            id,
            from: self.shard,
            request,
        };
        turn.granted().await;
        let sent = self.senders.send_to(shard.0 as usize, envelope).await;
        drop(turn);
        if sent.is_err() {
            return None;
        }
        std::future::poll_fn(|cx| {
            let mut pending = self.pending.borrow_mut();
            let Some(slot) = pending.get_mut(&id) else {
                return Poll::Ready(None);
            };
            match slot.response.take() {
                Some(response) => Poll::Ready(Some(response)),
                None => {
                    slot.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }
}

/// How the shards are started.
#[derive(Clone, Debug)]
pub struct ShardPlan {
    pub shards: usize,
    /// Pin shard i to CPU i (modulo the CPUs available).
    pub pin: bool,
    /// Spin this long before parking an idle executor: cross-shard round
    /// trips drop from ~150 µs to ~14 µs, at the cost of CPU burnt.
    pub spin_before_park: Option<Duration>,
}

/// CPUs this process may run on.
pub fn available_cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Starts one executor per shard running `body(shard)` and waits for all of
/// them to finish.
pub fn run_shards<G, F>(plan: &ShardPlan, body: G) -> Result<(), String>
where
    // Each executor gets its own clone of `body`, so it need not be `Sync`
    // (a glommio `MeshBuilder` captured in it is `Send` but not `Sync`).
    G: Fn(ShardId) -> F + Send + Clone + 'static,
    F: Future<Output = ()> + 'static,
{
    if plan.shards == 0 || plan.shards > SHARDS_MAX {
        return Err(format!(
            "shards must be between 1 and {SHARDS_MAX}, got {}",
            plan.shards
        ));
    }
    let cores = available_cores();
    // Each shard's heartbeat, watched from a plain thread (`wake_watch`):
    // a shard that glommio parked with work still runnable is woken.
    let watch = WakeWatch::start("shard", plan.shards, Timing::default())?;
    let mut handles = Vec::with_capacity(plan.shards);
    for index in 0..plan.shards {
        let placement = if plan.pin {
            Placement::Fixed(index % cores)
        } else {
            Placement::Unbound
        };
        let mut builder = LocalExecutorBuilder::new(placement);
        if let Some(spin) = plan.spin_before_park {
            builder = builder.spin_before_park(spin);
        }
        let body = body.clone();
        let heartbeat = watch
            .heartbeat(index)
            .ok_or_else(|| format!("no heartbeat for shard {index}"))?;
        let handle = spawn_watched(builder, format!("shard-{index}"), heartbeat, move || {
            body(ShardId(index as u16))
        })
        .map_err(|error| format!("starting shard {index}: {error}"))?;
        handles.push(handle);
    }
    let mut first_error = None;
    for (index, handle) in handles.into_iter().enumerate() {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                first_error.get_or_insert(format!("shard {index} failed: {error}"));
            }
            Err(_) => {
                first_error.get_or_insert(format!("shard {index} panicked"));
            }
        }
    }
    drop(watch);
    match first_error {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_spread_evenly() {
        let mut counts = [0usize; 4];
        for partition in 0..400 {
            counts[shard_for("orders", partition, 4).0 as usize] += 1;
        }
        assert_eq!(counts, [100; 4]);
        assert_eq!(shard_for("a", 3, 1), ShardId(0));
    }

    #[test]
    fn mesh_round_trip_between_two_shards() {
        let plan = mesh_plan::<u64, u64>(2);
        let results = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let shard_plan = ShardPlan {
            shards: 2,
            pin: false,
            spin_before_park: None,
        };
        let recorded = std::sync::Arc::clone(&results);
        run_shards(&shard_plan, move |shard| {
            let plan = plan.clone();
            let recorded = std::sync::Arc::clone(&recorded);
            async move {
                let mesh = Mesh::join(plan).await.expect("join");
                assert_eq!(mesh.shard(), shard, "the mesh id is not the shard's index");
                let me = shard.0 as u64;
                mesh.set_handler(Rc::new(move |x: u64| Box::pin(async move { x * 10 + me })));
                let other = ShardId(1 - shard.0);
                let answer = mesh.call(other, 7).await.expect("answer");
                let local = mesh.call(shard, 1).await.expect("local answer");
                recorded
                    .lock()
                    .expect("lock")
                    .push((shard.0, answer, local));
                // Stay alive until the peer has its answer too.
                glommio::timer::sleep(Duration::from_millis(200)).await;
            }
        })
        .expect("shards ran");
        let mut results = results.lock().expect("lock").clone();
        results.sort();
        assert_eq!(results, vec![(0, 71, 10), (1, 70, 11)]);
    }

    #[test]
    fn a_call_dropped_before_its_answer_leaves_nothing_pending() {
        let plan = mesh_plan::<u64, u64>(2);
        let shard_plan = ShardPlan {
            shards: 2,
            pin: false,
            spin_before_park: None,
        };
        let left = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let recorded = std::sync::Arc::clone(&left);
        run_shards(&shard_plan, move |shard| {
            let plan = plan.clone();
            let recorded = std::sync::Arc::clone(&recorded);
            async move {
                let mesh = Mesh::join(plan).await.expect("join");
                // Answers after 100 ms: the caller gives up after 10.
                mesh.set_handler(Rc::new(move |x: u64| {
                    Box::pin(async move {
                        glommio::timer::sleep(Duration::from_millis(100)).await;
                        x
                    })
                }));
                let other = ShardId(1 - shard.0);
                let answered = glommio::timer::timeout(Duration::from_millis(10), async {
                    Ok(mesh.call(other, 7).await)
                })
                .await;
                let during = mesh.pending.borrow().len();
                // The late answer arrives meanwhile and finds no call.
                glommio::timer::sleep(Duration::from_millis(300)).await;
                let after = mesh.pending.borrow().len();
                recorded
                    .lock()
                    .expect("lock")
                    .push((answered.is_err(), during, after));
            }
        })
        .expect("shards ran");
        let left = left.lock().expect("lock").clone();
        assert_eq!(left, vec![(true, 0, 0), (true, 0, 0)]);
    }
}
