//! Shard 0 as the broker's controller: it runs this node's member of the
//! metadata quorum, turns admin requests (CreateTopics, DeleteTopics,
//! CreatePartitions, config changes, producer-id blocks, reassignments,
//! leader elections) into metadata records, and publishes every applied
//! image to all shards.
//!
//! An operation computes the whole new image from the current one (as the
//! single-node broker did); the records written are the difference
//! ([`sluice_cluster::records::diff_records`]). Operations run one at a
//! time, each answered once its records are applied and its image is
//! published on every shard, so a client that created a topic can produce
//! to it at once.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_cluster::placement::{place, Candidate};
use sluice_cluster::records::diff_records;
use sluice_cluster::transport::{Forwarder, Peers, ServeConfig};
use sluice_cluster::wal::Wal;
use sluice_cluster::{MetadataNode, MetadataRecord, NodeConfig, Quorum, WriteError};
use sluice_engine::metadata::{FileMetadataStore, MetadataStore};
use sluice_engine::notify::Signal;
use sluice_engine::{
    BrokerInfo, ClusterMetadata, DmaStorage, PartitionState, ShardId, TopicMetadata,
};

use super::registration::{check_cluster_id, check_observer_data_dir, Refusals, Registration};
use super::{
    base64_url, config_operation, forward, futures_lite_join_all, random_id, validate_topic_name,
    Broker, ConfigChange, ControllerRequest, IsrChange, NewTopic, PartitionKey, QuotaAlteration,
    ShardRequest, ShardResponse, TopicOutcome,
};
use crate::acl::AclStore;
use crate::constants::{
    AUTO_CREATE_WAIT_MS, CONTROLLED_SHUTDOWN_POLL, CONTROLLED_SHUTDOWN_RETRY,
    CONTROLLED_SHUTDOWN_TIMEOUT, CONTROLLER_HANDOVER_TIMEOUT, CONTROLLER_STALL_TOLERANCE,
    DISCONNECTED_FENCE_GRACE, LIVENESS_CHECK_INTERVAL, METADATA_WRITE_TIMEOUT,
    OFFSETS_TOPIC_SEGMENT_BYTES, PORT_HELD_RETRY, PORT_HELD_WAIT, PRODUCER_ID_BLOCK,
    QUORUM_WAIT_REPORT_INTERVAL, QUOTA_ENTITIES_MAX, REGISTRATION_RETRY_BACKOFF,
    REGISTRATION_TIMEOUT,
};
use crate::errors::code;
use crate::sasl::alter::{Deletion, Upsertion, UserOutcome};
use crate::sasl::{self, CredentialStore};
use crate::topic_config::{self, ListEdit};

/// Producer ids handed out but not yet persisted as used.
struct ProducerIdBlock {
    next: i64,
    end: i64,
}

/// Shard 0's extra state as the controller.
pub(super) struct Controller {
    /// Set once the quorum member is started.
    quorum: RefCell<Option<Quorum>>,
    /// Serialises metadata changes: one change is applied and published
    /// before the next starts.
    lock: Rc<glommio::sync::Semaphore>,
    ids: RefCell<ProducerIdBlock>,
    /// The newest image version every shard has applied.
    published: Rc<PublishedState>,
    /// Set on a controlled shutdown: the broker stays fenced instead of
    /// registering again.
    stopping: Rc<Cell<bool>>,
    /// Set while storage fails: the broker stays fenced instead of
    /// registering again.
    pub(super) withdrawn: Rc<Cell<bool>>,
}

impl Controller {
    pub(super) fn new() -> Controller {
        Controller {
            quorum: RefCell::new(None),
            lock: Rc::new(glommio::sync::Semaphore::new(1)),
            ids: RefCell::new(ProducerIdBlock { next: 0, end: 0 }),
            published: Rc::new(PublishedState::default()),
            stopping: Rc::new(Cell::new(false)),
            withdrawn: Rc::new(Cell::new(false)),
        }
    }

    pub(super) fn quorum(&self) -> Option<Quorum> {
        self.quorum.borrow().clone()
    }
}

/// A metadata change that was not made, as a Kafka error.
#[derive(Debug)]
pub struct MetadataWriteError {
    pub code: i16,
    pub message: String,
}

impl std::fmt::Display for MetadataWriteError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.message)
    }
}

fn write_error(error: WriteError) -> MetadataWriteError {
    match error {
        WriteError::NotLeader { leader } => MetadataWriteError {
            code: code::NOT_CONTROLLER,
            message: match leader {
                Some(leader) => format!("this node is not the active controller; node {leader} is"),
                None => "the metadata quorum has no leader at the moment".into(),
            },
        },
        WriteError::TimedOut => MetadataWriteError {
            code: code::REQUEST_TIMED_OUT,
            message: "the metadata quorum did not apply the change in time; it may have no \
                      leader or have lost its majority"
                .into(),
        },
        WriteError::TooLarge { bytes } => MetadataWriteError {
            code: code::POLICY_VIOLATION,
            message: format!("the change is {bytes} bytes of metadata, more than one write may hold; make it in smaller requests"),
        },
        WriteError::Failed(reason) => MetadataWriteError {
            code: code::KAFKA_STORAGE_ERROR,
            message: format!("the metadata log cannot be written: {reason}"),
        },
        WriteError::DuplicateBroker(reason) => MetadataWriteError {
            code: code::DUPLICATE_BROKER_REGISTRATION,
            message: reason,
        },
    }
}

impl Broker {
    /// Controller start-up: starts this node's part in the metadata quorum
    /// (a voter's member, or an observer that follows the voters), waits
    /// for the quorum to elect a leader, registers this broker, and
    /// publishes the image to every shard (each opens its partitions).
    /// Returns when all shards are ready.
    pub async fn start_controller(&self) -> Result<(), String> {
        let Some(controller) = &self.controller else {
            return Ok(());
        };
        let node_id = self.config.node_id;
        let cluster = &self.config.cluster;
        let voters: Vec<i32> = if cluster.voters.is_empty() {
            vec![node_id]
        } else {
            cluster.voters.iter().map(|(id, _)| *id).collect()
        };
        let (quorum, incarnation) = if voters.contains(&node_id) {
            self.start_voter(&voters).await?
        } else {
            tracing::info!(
                ?voters,
                "this broker is not a voter: it follows the metadata from the voters"
            );
            check_observer_data_dir(&self.config.data_dir, node_id, &cluster.voters)?;
            let incarnation = u64::from_be_bytes(random_id()[..8].try_into().unwrap_or([0; 8]));
            (
                Quorum::observe(node_id, incarnation, cluster.voters.clone()),
                incarnation,
            )
        };
        *controller.quorum.borrow_mut() = Some(quorum.clone());
        glommio::spawn_local(super::lease::renew_lease(
            quorum.clone(),
            Arc::clone(&self.config.lease),
            voters.len(),
            Duration::from_millis(cluster.broker_session_timeout_ms),
        ))
        .detach();
        self.form_cluster(&quorum, &voters).await?;
        if quorum.is_observer() {
            // Before it registers: a broker must not join another cluster
            // with the data of its own.
            let cluster_id = quorum.image().cluster_id.clone();
            check_cluster_id(&self.config.data_dir, &cluster_id, &cluster.voters).await?;
        }
        let session = Duration::from_millis(cluster.broker_session_timeout_ms);
        let registration = Rc::new(Registration::default());
        let (host, port) = self.advertised();
        let me = BrokerInfo {
            id: node_id,
            incarnation,
            host,
            port,
            rack: cluster.rack.clone(),
            fenced: false,
            endpoints: self.extra_endpoints(),
        };
        glommio::spawn_local(keep_registered(
            quorum.clone(),
            me.clone(),
            session,
            Rc::clone(&controller.stopping),
            Rc::clone(&controller.withdrawn),
            Rc::clone(&registration),
        ))
        .detach();
        // Runs from before this broker is registered: if this node leads the
        // quorum, it is the one to fence its own previous process (see
        // `keep_registered`) and any broker that died meanwhile.
        glommio::spawn_local(watch_brokers(
            quorum.clone(),
            Rc::clone(&controller.lock),
            (node_id, incarnation),
            LeadershipPolicy {
                session: Duration::from_millis(cluster.broker_session_timeout_ms),
                unclean: cluster.unclean_leader_election,
                rebalance_interval: (cluster.leader_imbalance_check_interval_ms > 0)
                    .then(|| Duration::from_millis(cluster.leader_imbalance_check_interval_ms)),
            },
        ))
        .detach();
        let watched = quorum.clone();
        let registered = async {
            quorum
                .changes()
                .wait_for(move || (watched.image().brokers.get(&me.id) == Some(&me)).then_some(()))
                .await;
            Ok(())
        };
        // Another live broker holds this id: stop with the controller's
        // reason rather than wait forever or take the id over.
        let refused = async { Err(registration.given_up().await) };
        futures_lite::FutureExt::or(registered, refused).await?;
        registration.started();
        glommio::spawn_local(publish_images(
            self.mesh.clone(),
            quorum.clone(),
            Rc::clone(&controller.published),
        ))
        .detach();
        let version = quorum.image().version;
        self.wait_published(version).await;
        self.import_legacy_acls().await?;
        self.import_staged_credentials().await
    }

    /// Writes the credentials `sluice user create --data-dir` staged in the
    /// credential file to the metadata log (replacing a user's credential
    /// for the same mechanism), then renames the file so that a later start
    /// does not write them again.
    async fn import_staged_credentials(&self) -> Result<(), String> {
        let Some(shared) = &self.config.sasl.credentials else {
            return Ok(());
        };
        let staged = shared.take_staged();
        let file = self
            .config
            .data_dir
            .join(sasl::credentials::CREDENTIALS_FILE);
        if let Some(staged) = staged.filter(|staged| !staged.is_empty()) {
            let failed = |reason: String| {
                format!(
                    "the credentials of {} could not be written to the metadata log: {reason}",
                    file.display()
                )
            };
            for upsertions in sasl::alter::staged_upsertions(&staged) {
                let request = ControllerRequest::AlterScramCredentials {
                    deletions: Vec::new(),
                    upsertions,
                };
                match self.serve_controller(request).await {
                    ShardResponse::ScramCredentials(Ok(outcomes)) => {
                        for outcome in outcomes.iter().filter(|outcome| outcome.error_code != 0) {
                            tracing::warn!(
                                user = %outcome.user,
                                reason = outcome.message.as_deref().unwrap_or(""),
                                "a staged SCRAM credential was refused"
                            );
                        }
                    }
                    ShardResponse::ScramCredentials(Err((_, message))) => {
                        return Err(failed(message))
                    }
                    _ => return Err(failed("the controller did not answer".into())),
                }
            }
            let renamed = self.retire_imported(
                "credentials",
                sasl::credentials::CREDENTIALS_FILE,
                sasl::credentials::CREDENTIALS_FILE_IMPORTED,
            )?;
            tracing::info!(
                file = %renamed.display(),
                "staged SCRAM credentials were moved into the metadata log"
            );
        }
        let sasl_listener = self
            .config
            .listener_protocols()
            .any(crate::config::SecurityProtocol::is_sasl);
        if sasl_listener && self.controller_image().scram_credentials.is_empty() {
            tracing::warn!(
                "SASL is on but the cluster has no users, so no client can log in; create the \
                 first one with `sluice user create --data-dir {} --user NAME` (password on \
                 stdin) while the broker is stopped, and start it again",
                self.config.data_dir.display()
            );
        }
        Ok(())
    }

    /// Renames a file of the data directory whose `what` are now in the
    /// metadata log, so that no later start writes them again; the new
    /// path.
    fn retire_imported(
        &self,
        what: &str,
        file: &str,
        imported: &str,
    ) -> Result<std::path::PathBuf, String> {
        let file = self.config.data_dir.join(file);
        let renamed = self.config.data_dir.join(imported);
        std::fs::rename(&file, &renamed).map_err(|error| {
            format!(
                "the {what} of {} are in the metadata log, but renaming it to {} failed: {error}",
                file.display(),
                renamed.display()
            )
        })?;
        Ok(renamed)
    }

    /// Writes the ACLs of a single-node data directory's old ACL file to
    /// the metadata log, then renames the file so that a later start does
    /// not write them again (an ACL deleted since must stay deleted).
    async fn import_legacy_acls(&self) -> Result<(), String> {
        let Some(authorizer) = &self.config.authorizer else {
            return Ok(());
        };
        let Some(legacy) = authorizer.acls.take_legacy() else {
            return Ok(());
        };
        let file = self.config.data_dir.join(crate::acl::ACLS_FILE);
        let acls: Vec<_> = legacy.iter().cloned().collect();
        let count = acls.len();
        let failed = |reason: String| {
            format!(
                "the ACLs of {} could not be written to the metadata log: {reason}",
                file.display()
            )
        };
        match self
            .serve_controller(ControllerRequest::CreateAcls(acls))
            .await
        {
            ShardResponse::AclsCreated(Ok(outcomes)) => {
                for reason in outcomes.into_iter().flatten() {
                    tracing::warn!(%reason, "an ACL of the old ACL file was refused");
                }
            }
            ShardResponse::AclsCreated(Err((_, message))) => return Err(failed(message)),
            _ => return Err(failed("the controller did not answer".into())),
        }
        let renamed = self.retire_imported(
            "ACLs",
            crate::acl::ACLS_FILE,
            crate::acl::ACLS_FILE_IMPORTED,
        )?;
        tracing::info!(
            acls = count,
            file = %renamed.display(),
            "the old ACL file's ACLs were moved into the metadata log"
        );
        Ok(())
    }

    /// A voter's start: opens this node's metadata log (migrating a
    /// single-node directory's metadata file into it the first time),
    /// starts its quorum member and the controller port.
    async fn start_voter(&self, voters: &[i32]) -> Result<(Quorum, u64), String> {
        let data_dir = self.config.data_dir.clone();
        let node_id = self.config.node_id;
        let wal = Wal::new(DmaStorage, &data_dir);
        let legacy = FileMetadataStore::new(DmaStorage, data_dir.clone(), node_id);
        let bootstrap = if wal.is_new() {
            legacy.load().await.map_err(|error| error.to_string())?
        } else {
            None
        };
        let migrating = bootstrap.is_some();
        let cluster = &self.config.cluster;
        if migrating && voters != [node_id] {
            return Err(format!(
                "{} holds a single-node broker's metadata file; a quorum cannot grow from one node yet: start this node alone (no controller_voters), or start the cluster on empty data directories",
                data_dir.display()
            ));
        }
        let incarnation = u64::from_be_bytes(random_id()[..8].try_into().unwrap_or([0; 8]));
        let config = NodeConfig {
            node_id,
            incarnation,
            voters: voters.to_vec(),
            snapshot_entries: sluice_cluster::constants::SNAPSHOT_ENTRIES_DEFAULT,
            snapshot_bytes: sluice_cluster::constants::SNAPSHOT_LOG_BYTES_DEFAULT,
        };
        let node = MetadataNode::open(config, wal, bootstrap)
            .await
            .map_err(|error| format!("metadata log in {}: {error}", data_dir.display()))?;
        if migrating {
            legacy.retire().map_err(|error| error.to_string())?;
            tracing::info!("the single-node metadata file was moved into the metadata log");
        }
        let peers = Peers::new(node_id, incarnation, &cluster.voters);
        let sender = peers.clone();
        let quorum = Quorum::start(node, Rc::new(move |message| sender.send(message)));
        if let Some(listen) = cluster.controller_listen {
            let listener = bind_controller_port(listen).await.map_err(|error| {
                format!(
                    "cannot bind the controller port {listen} of node {node_id}: {error}{}",
                    if error.kind() == std::io::ErrorKind::AddrInUse {
                        " (is another process running as this node, or is it another's port?)"
                    } else {
                        ""
                    }
                )
            })?;
            let this = self.this.clone();
            let forwarder: Forwarder = Rc::new(move |bytes: Vec<u8>| {
                let broker = this.upgrade();
                Box::pin(async move {
                    let answer = match (broker, forward::decode_request(&bytes)) {
                        (Some(broker), Ok(request)) => broker.serve_controller_here(request).await,
                        (_, Err(error)) => {
                            tracing::warn!(%error, "a malformed forwarded controller request");
                            ShardResponse::Done
                        }
                        (None, _) => ShardResponse::Done,
                    };
                    forward::encode_response(&answer)
                }) as Pin<Box<dyn Future<Output = Vec<u8>>>>
            });
            let serving = ServeConfig {
                voters: voters.to_vec(),
                broker_session: Duration::from_millis(cluster.broker_session_timeout_ms),
            };
            glommio::spawn_local(sluice_cluster::transport::serve(
                listener,
                serving,
                quorum.clone(),
                forwarder,
            ))
            .detach();
        }
        peers.start_senders();
        Ok((quorum, incarnation))
    }

    /// The image controller operations start from: the quorum's newest.
    /// Waits until the quorum has a leader and the cluster an id (the first
    /// leader writes one). Logs while it waits: a quorum needs a majority
    /// of its voters up.
    async fn form_cluster(&self, quorum: &Quorum, voters: &[i32]) -> Result<(), String> {
        let started = Instant::now();
        let mut next_report = started + QUORUM_WAIT_REPORT_INTERVAL;
        loop {
            let status = quorum.status();
            if !quorum.image().cluster_id.is_empty() {
                return Ok(());
            }
            if status.can_decide {
                let id = base64_url(&random_id());
                let deadline = Instant::now() + METADATA_WRITE_TIMEOUT;
                match quorum
                    .decide(
                        status.term,
                        vec![MetadataRecord::ClusterId { id }],
                        deadline,
                    )
                    .await
                {
                    Ok(_) => continue,
                    Err(WriteError::Failed(reason)) => {
                        return Err(format!("the metadata log cannot be written: {reason}"))
                    }
                    Err(_) => continue,
                }
            }
            if Instant::now() >= next_report {
                tracing::warn!(
                    ?voters,
                    leader = ?status.leader,
                    waited_s = started.elapsed().as_secs(),
                    "waiting for the metadata quorum: a majority of the voters must be up and reach each other's controller ports"
                );
                next_report = Instant::now() + QUORUM_WAIT_REPORT_INTERVAL;
            }
            let watched = quorum.clone();
            let changed = quorum.changes().wait_for(move || {
                let status = watched.status();
                (status.can_decide || !watched.image().cluster_id.is_empty()).then_some(())
            });
            let _ = futures_lite::FutureExt::or(changed, async {
                glommio::timer::sleep(QUORUM_WAIT_REPORT_INTERVAL).await;
            })
            .await;
        }
    }

    pub(super) fn controller_image(&self) -> Arc<ClusterMetadata> {
        match self.controller.as_ref().and_then(Controller::quorum) {
            Some(quorum) => quorum.image(),
            None => self.metadata(),
        }
    }

    async fn wait_published(&self, version: u64) {
        let Some(controller) = &self.controller else {
            return;
        };
        let state = Rc::clone(&controller.published);
        let waiting = Rc::clone(&state);
        state
            .signal
            .wait_for(move || (waiting.version.get() >= version).then_some(()))
            .await;
    }

    /// Writes the difference between `base` and `metadata` to the metadata
    /// log and waits until every shard has applied it.
    pub(super) async fn publish(
        &self,
        base: &ClusterMetadata,
        metadata: ClusterMetadata,
    ) -> Result<(), MetadataWriteError> {
        let quorum = self
            .controller
            .as_ref()
            .and_then(Controller::quorum)
            .ok_or_else(|| write_error(WriteError::NotLeader { leader: None }))?;
        let records = diff_records(base, &metadata);
        if records.is_empty() {
            return Ok(());
        }
        // Decisions are made against the image; only a leader that has
        // applied every earlier term has the current one.
        let status = quorum.status();
        if !status.can_decide {
            return Err(write_error(WriteError::NotLeader {
                leader: status.leader,
            }));
        }
        let deadline = Instant::now() + METADATA_WRITE_TIMEOUT;
        let index = quorum
            .decide(status.term, records, deadline)
            .await
            .map_err(write_error)?;
        self.wait_published(index).await;
        Ok(())
    }

    /// A controller request from this node: served here when this node
    /// is the active controller, else forwarded to it over the controller
    /// port.
    pub(super) async fn serve_controller(&self, request: ControllerRequest) -> ShardResponse {
        let status = self
            .controller
            .as_ref()
            .and_then(Controller::quorum)
            .map(|quorum| quorum.status());
        let leader = match status {
            Some(status) if !status.can_decide => status.leader,
            _ => None,
        };
        let address = leader
            .filter(|id| *id != self.config.node_id)
            .and_then(|id| {
                self.config
                    .cluster
                    .voters
                    .iter()
                    .find(|(voter, _)| *voter == id)
                    .map(|(_, address)| (id, *address))
            });
        let Some((leader, address)) = address else {
            return self.serve_controller_here(request).await;
        };
        let deadline = Instant::now() + METADATA_WRITE_TIMEOUT;
        let encoded = forward::encode_request(&request);
        let answer =
            sluice_cluster::transport::forward(address, self.config.node_id, &encoded, deadline)
                .await;
        match answer
            .map(|bytes| forward::decode_response(&bytes).map_err(|error| error.to_string()))
        {
            Ok(Ok(response)) => response,
            Ok(Err(reason)) | Err(reason) => {
                tracing::warn!(leader, %reason, "forwarding a controller request failed");
                not_controller(&request, &reason)
            }
        }
    }

    /// Serves a controller request on this node, never forwarding it (a
    /// forwarded request that finds leadership moved is answered
    /// NOT_CONTROLLER here, so requests cannot bounce between nodes).
    pub(super) async fn serve_controller_here(&self, request: ControllerRequest) -> ShardResponse {
        let Some(controller) = &self.controller else {
            tracing::error!("controller request reached a shard that is not the controller");
            return ShardResponse::Done;
        };
        let Ok(_permit) = controller.lock.acquire_permit(1).await else {
            return ShardResponse::Done;
        };
        match request {
            ControllerRequest::CreateTopics(topics) => {
                ShardResponse::Topics(self.create_topics(topics).await)
            }
            ControllerRequest::DeleteTopics(names) => {
                ShardResponse::Topics(self.delete_topics(names).await)
            }
            ControllerRequest::CreatePartitions {
                topic,
                count,
                validate_only,
            } => ShardResponse::Topics(vec![
                self.create_partitions(topic, count, validate_only).await,
            ]),
            ControllerRequest::AlterTopicConfigs {
                topic,
                changes,
                validate_only,
            } => ShardResponse::Topics(vec![
                self.alter_configs(topic, changes, validate_only).await,
            ]),
            ControllerRequest::AllocateProducerId => {
                ShardResponse::ProducerId(self.allocate_producer_id(controller).await)
            }
            ControllerRequest::AlterPartitions(changes) => {
                ShardResponse::Partitions(self.alter_partitions(changes).await)
            }
            ControllerRequest::ShutDownBroker { id } => self.shut_down_broker(id).await,
            ControllerRequest::ResignReplicas { id, partitions } => {
                self.resign_replicas(id, &partitions).await
            }
            ControllerRequest::AlterReassignments(reassignments) => {
                ShardResponse::Reassignments(self.alter_reassignments(reassignments).await)
            }
            ControllerRequest::ElectLeaders { election, topics } => {
                ShardResponse::Elections(self.elect_leaders(election, topics).await)
            }
            ControllerRequest::AlterClientQuotas(alterations) => {
                ShardResponse::ClientQuotas(self.alter_client_quotas(alterations).await)
            }
            ControllerRequest::CreateAcls(acls) => {
                ShardResponse::AclsCreated(self.change_acls(|store| store.create(acls)).await)
            }
            ControllerRequest::DeleteAcls(filters) => {
                ShardResponse::AclsDeleted(self.change_acls(|store| store.delete(&filters)).await)
            }
            ControllerRequest::AlterScramCredentials {
                deletions,
                upsertions,
            } => ShardResponse::ScramCredentials(
                self.alter_scram_credentials(&deletions, &upsertions).await,
            ),
        }
    }

    /// AlterUserScramCredentials: the changes checked against the image's
    /// credentials as Kafka's controller checks them, and the users whose
    /// change stands written as one metadata entry.
    async fn alter_scram_credentials(
        &self,
        deletions: &[Deletion],
        upsertions: &[Upsertion],
    ) -> Result<Vec<UserOutcome>, (i16, String)> {
        let base = self.controller_image();
        let mut store = CredentialStore::empty()
            .map_err(|reason| (code::UNKNOWN_SERVER_ERROR, reason))?
            .with_credentials(&base.scram_credentials);
        let outcomes = sasl::alter::apply(&mut store, deletions, upsertions);
        let changed: BTreeSet<&str> = outcomes
            .iter()
            .filter(|outcome| outcome.error_code == code::NONE)
            .map(|outcome| outcome.user.as_str())
            .collect();
        if changed.is_empty() {
            return Ok(outcomes);
        }
        // Only the changed users' entries are replaced, so that a
        // credential this broker cannot read (a newer one wrote it) stays.
        let mut credentials = (*base.scram_credentials).clone();
        credentials.retain(|(user, _), _| !changed.contains(user.as_str()));
        credentials.extend(
            store
                .to_stored()
                .into_iter()
                .filter(|((user, _), _)| changed.contains(user.as_str())),
        );
        let mut metadata = (*base).clone();
        metadata.scram_credentials = Arc::new(credentials);
        self.publish(&base, metadata)
            .await
            .map_err(|error| (error.code, error.message))?;
        Ok(outcomes)
    }

    /// CreateAcls and DeleteAcls: `change` applied to the image's ACLs and
    /// the difference written as one metadata entry. Its outcome is
    /// answered only once the entry is applied here.
    async fn change_acls<T>(
        &self,
        change: impl FnOnce(&mut AclStore) -> T,
    ) -> Result<T, (i16, String)> {
        let base = self.controller_image();
        let mut store = AclStore::from_stored(&base.acls);
        let outcome = change(&mut store);
        let mut metadata = (*base).clone();
        let acls = store.to_stored();
        if acls != *base.acls {
            metadata.acls = Arc::new(acls);
        }
        self.publish(&base, metadata)
            .await
            .map_err(|error| (error.code, error.message))?;
        Ok(outcome)
    }

    /// AlterClientQuotas: the changes (checked by the handler) applied to
    /// the image and written as one metadata entry, one record per entity.
    async fn alter_client_quotas(
        &self,
        alterations: Vec<QuotaAlteration>,
    ) -> Result<(), (i16, String)> {
        let base = self.controller_image();
        let mut metadata = (*base).clone();
        for alteration in &alterations {
            let mut values = metadata
                .client_quotas
                .remove(&alteration.entity)
                .unwrap_or_default();
            crate::quota::apply_changes(&mut values, &alteration.changes);
            if !values.is_empty() {
                metadata
                    .client_quotas
                    .insert(alteration.entity.clone(), values);
            }
        }
        if metadata.client_quotas.len() > QUOTA_ENTITIES_MAX
            && metadata.client_quotas.len() > base.client_quotas.len()
        {
            return Err((
                code::POLICY_VIOLATION,
                format!("the cluster holds at most {QUOTA_ENTITIES_MAX} client quota entities"),
            ));
        }
        self.publish(&base, metadata)
            .await
            .map_err(|error| (error.code, error.message))
    }

    /// A broker's controlled shutdown, on the active controller: fences it
    /// as if its session had expired, so each partition it leads moves to
    /// the first live ISR member (offline if it was the only one, as it
    /// will be once it stops) and it leaves every ISR.
    async fn shut_down_broker(&self, id: i32) -> ShardResponse {
        let base = self.controller_image();
        let mut metadata = (*base).clone();
        match metadata.brokers.get_mut(&id) {
            Some(broker) if !broker.fenced => broker.fenced = true,
            _ => return ShardResponse::Done,
        }
        let live: Vec<i32> = metadata.live_brokers().map(|broker| broker.id).collect();
        for topic in metadata.topics.values_mut() {
            for state in topic.placement.iter_mut() {
                reconcile(state, &live, false);
            }
        }
        match self.publish(&base, metadata).await {
            Ok(()) => {
                tracing::info!(broker = id, "controlled shutdown: leaderships moved");
                ShardResponse::Done
            }
            Err(error) => ShardResponse::Partition(Err(error.code)),
        }
    }

    /// On the active controller: broker `id` cannot serve `partitions`
    /// (their data directory fails). It leaves each one's ISR, and a
    /// partition it leads moves to the first live ISR member left, as on
    /// its fencing, but for these partitions only. One it is the only
    /// in-sync replica of stays as it is: no other replica holds every
    /// acknowledged record.
    async fn resign_replicas(&self, id: i32, partitions: &[PartitionKey]) -> ShardResponse {
        let base = self.controller_image();
        let mut metadata = (*base).clone();
        let live: Vec<i32> = metadata
            .live_brokers()
            .map(|broker| broker.id)
            .filter(|broker| *broker != id)
            .collect();
        let mut moved = 0;
        for (topic, partition) in partitions {
            let Some(state) = metadata.topics.get_mut(topic).and_then(|meta| {
                let index = usize::try_from(*partition).ok()?;
                meta.placement.get_mut(index)
            }) else {
                continue;
            };
            let others_in_sync = state
                .isr
                .iter()
                .any(|member| *member != id && live.contains(member));
            if !state.isr.contains(&id) || !others_in_sync {
                continue;
            }
            if reconcile(state, &live, false) != Reconciled::Unchanged {
                moved += 1;
            }
        }
        if moved == 0 {
            return ShardResponse::Done;
        }
        match self.publish(&base, metadata).await {
            Ok(()) => {
                tracing::info!(
                    broker = id,
                    partitions = moved,
                    "replicas in a failing data directory left their ISRs and leaderships"
                );
                ShardResponse::Done
            }
            Err(error) => ShardResponse::Partition(Err(error.code)),
        }
    }

    /// Kafka's controlled shutdown, before this broker stops on SIGTERM:
    /// its partition leaderships move first, then, if it is the active
    /// controller, the metadata quorum's leadership.
    pub async fn controlled_shutdown(&self) {
        self.move_leaderships().await;
        self.hand_over_controller().await;
    }

    /// Shard 0 asks the active controller to fence this broker, which
    /// moves its leaderships to other in-sync replicas at once (clients
    /// move on instead of waiting out the session timeout), and every shard
    /// waits until its image shows this broker fenced, at most
    /// [`CONTROLLED_SHUTDOWN_TIMEOUT`]. A broker alone in its cluster, or
    /// the last one live, has nothing to hand over.
    async fn move_leaderships(&self) {
        let others_live = self
            .metadata()
            .live_brokers()
            .any(|broker| broker.id != self.config.node_id);
        if self.config.cluster.voters.len() <= 1 || !others_live {
            return;
        }
        let node = self.config.node_id;
        let deadline = Instant::now() + CONTROLLED_SHUTDOWN_TIMEOUT;
        let fenced = || {
            self.metadata()
                .brokers
                .get(&node)
                .is_none_or(|broker| broker.fenced)
        };
        if let Some(controller) = &self.controller {
            controller.stopping.set(true);
            while !fenced() && Instant::now() < deadline {
                let request = ControllerRequest::ShutDownBroker { id: node };
                let wait = deadline.saturating_duration_since(Instant::now());
                let answer = glommio::timer::timeout(wait, async {
                    Ok(self.serve_controller(request).await)
                })
                .await;
                if matches!(answer, Ok(ShardResponse::Done)) {
                    break;
                }
                tracing::debug!(?answer, "controlled shutdown not accepted yet; retrying");
                glommio::timer::sleep(CONTROLLED_SHUTDOWN_RETRY).await;
            }
        }
        while !fenced() {
            if Instant::now() >= deadline {
                tracing::warn!(
                    "controlled shutdown timed out: stopping while still leading; the controller moves the leaderships after the session timeout"
                );
                return;
            }
            glommio::timer::sleep(CONTROLLED_SHUTDOWN_POLL).await;
        }
        if self.shard.0 == 0 {
            tracing::info!("leaderships handed over; stopping");
        }
    }

    /// On the active controller (shard 0), once its own broker is fenced:
    /// hands the metadata quorum's leadership to the most caught-up live
    /// voter (raft-rs's leader transfer) and waits until that voter leads,
    /// so the quorum goes without a leader for a round trip instead of an
    /// election timeout after this process is gone, with no metadata
    /// written meanwhile. Stops anyway, saying so, after
    /// [`CONTROLLER_HANDOVER_TIMEOUT`]: the others then elect a leader as
    /// after a crash.
    async fn hand_over_controller(&self) {
        let Some(quorum) = self.controller.as_ref().and_then(Controller::quorum) else {
            return;
        };
        let Some(chosen) = quorum.transfer_leadership() else {
            return;
        };
        let node = self.config.node_id;
        let started = Instant::now();
        let watched = quorum.clone();
        let handed = quorum
            .changes()
            .wait_for(move || watched.status().leader.filter(|leader| *leader != node));
        match glommio::timer::timeout(CONTROLLER_HANDOVER_TIMEOUT, async { Ok(handed.await) }).await
        {
            Ok(leader) => tracing::info!(
                leader,
                chosen,
                handover_ms = started.elapsed().as_millis() as u64,
                "the metadata quorum's leadership handed over; stopping"
            ),
            Err(_) => tracing::warn!(
                chosen,
                waited_ms = started.elapsed().as_millis() as u64,
                "the metadata quorum's leadership was not taken over in time; stopping anyway: \
                 the other voters elect a leader after an election timeout"
            ),
        }
    }

    async fn create_topics(&self, topics: Vec<NewTopic>) -> Vec<TopicOutcome> {
        let base = self.controller_image();
        let mut metadata = (*base).clone();
        let mut outcomes = Vec::with_capacity(topics.len());
        let mut changed = false;
        for topic in topics {
            let mut outcome = TopicOutcome::ok(topic.name.clone(), topic.partitions);
            let invalid = if let Err(message) = validate_topic_name(&topic.name) {
                Some((code::INVALID_TOPIC_EXCEPTION, message))
            } else if metadata.topics.contains_key(&topic.name) {
                Some((
                    code::TOPIC_ALREADY_EXISTS,
                    format!("Topic '{}' already exists.", topic.name),
                ))
            } else if topic.partitions < 1
                || topic.partitions > sluice_engine::constants::TOPIC_PARTITIONS_MAX
            {
                Some((
                    code::INVALID_PARTITIONS,
                    format!(
                        "Number of partitions must be between 1 and {}.",
                        sluice_engine::constants::TOPIC_PARTITIONS_MAX
                    ),
                ))
            } else {
                topic
                    .configs
                    .iter()
                    .find_map(|(name, value)| topic_config::validate(name, value).err())
                    .map(|message| (code::INVALID_CONFIG, message))
            };
            let placed = match invalid {
                Some(invalid) => Err(invalid),
                None => self.replica_lists(
                    &metadata,
                    &topic.name,
                    0,
                    topic.partitions,
                    topic.replication_factor,
                    &topic.assignments,
                ),
            };
            match placed {
                Err((error_code, message)) => {
                    outcome.error_code = error_code;
                    outcome.error_message = Some(message);
                }
                Ok(replica_lists) => {
                    outcome.replication_factor = replica_lists
                        .first()
                        .map_or(0, |replicas| replicas.len() as i16);
                    if !topic.validate_only {
                        let id = random_id();
                        outcome.topic_id = id;
                        let placement = replica_lists
                            .into_iter()
                            .map(|replicas| new_partition_state(&metadata, replicas))
                            .collect();
                        metadata.topics.insert(
                            topic.name.clone(),
                            TopicMetadata {
                                name: topic.name.clone(),
                                id,
                                partitions: topic.partitions,
                                configs: topic.configs.clone(),
                                placement,
                            },
                        );
                        changed = true;
                    }
                }
            }
            outcomes.push(outcome);
        }
        if changed {
            self.publish_for(&base, metadata, &mut outcomes).await;
        }
        outcomes
    }

    /// Publishes a change made for several topics; if it is not made, each
    /// topic that had no error of its own gets the reason.
    async fn publish_for(
        &self,
        base: &ClusterMetadata,
        metadata: ClusterMetadata,
        outcomes: &mut [TopicOutcome],
    ) {
        if let Err(error) = self.publish(base, metadata).await {
            tracing::warn!(%error, "a metadata change was not made");
            for outcome in outcomes {
                if outcome.error_code == code::NONE {
                    outcome.error_code = error.code;
                    outcome.error_message = Some(error.message.clone());
                }
            }
        }
    }

    /// Brokers that may take new replicas: the registered, unfenced ones
    /// (this node alone while nothing is registered yet).
    fn candidates(&self, image: &ClusterMetadata) -> Vec<Candidate> {
        let live: Vec<Candidate> = image
            .live_brokers()
            .map(|broker| Candidate {
                id: broker.id,
                rack: broker.rack.clone(),
            })
            .collect();
        if live.is_empty() {
            vec![Candidate {
                id: self.config.node_id,
                rack: self.config.cluster.rack.clone(),
            }]
        } else {
            live
        }
    }

    /// Replica lists for new partitions: the request's own assignments
    /// (checked), or placed over the live brokers.
    fn replica_lists(
        &self,
        image: &ClusterMetadata,
        topic: &str,
        first: i32,
        count: i32,
        replication_factor: i16,
        assignments: &[Vec<i32>],
    ) -> Result<Vec<Vec<i32>>, (i16, String)> {
        if !assignments.is_empty() {
            let known = |id: &i32| {
                image.brokers.contains_key(id)
                    || (image.brokers.is_empty() && *id == self.config.node_id)
            };
            let width = assignments[0].len();
            for replicas in assignments {
                let mut distinct = replicas.clone();
                distinct.sort_unstable();
                distinct.dedup();
                let reason = if replicas.is_empty() {
                    Some("a partition has no replicas".to_string())
                } else if distinct.len() != replicas.len() {
                    Some(format!("replicas {replicas:?} name a broker twice"))
                } else if replicas.len() != width {
                    Some("every partition must have the same number of replicas".to_string())
                } else {
                    replicas
                        .iter()
                        .find(|id| !known(id))
                        .map(|id| format!("broker {id} is not registered"))
                };
                if let Some(reason) = reason {
                    return Err((code::INVALID_REPLICA_ASSIGNMENT, reason));
                }
            }
            return Ok(assignments.to_vec());
        }
        let replication_factor = if replication_factor == -1 {
            self.config.default_replication_factor
        } else {
            replication_factor
        };
        if replication_factor < 1 {
            return Err((
                code::INVALID_REPLICATION_FACTOR,
                "Replication factor must be larger than 0, or -1 to use the default value.".into(),
            ));
        }
        place(
            &self.candidates(image),
            topic,
            first,
            count,
            replication_factor as usize,
        )
        .map_err(|message| (code::INVALID_REPLICATION_FACTOR, message))
    }

    async fn delete_topics(&self, names: Vec<String>) -> Vec<TopicOutcome> {
        let base = self.controller_image();
        let mut metadata = (*base).clone();
        let mut outcomes = Vec::with_capacity(names.len());
        let mut changed = false;
        for name in names {
            let mut outcome = TopicOutcome::ok(name.clone(), 0);
            if !self.config.delete_topic_enable {
                outcome.error_code = code::TOPIC_DELETION_DISABLED;
            } else {
                match metadata.topics.remove(&name) {
                    Some(topic) => {
                        outcome.topic_id = topic.id;
                        changed = true;
                    }
                    None => outcome.error_code = code::UNKNOWN_TOPIC_OR_PARTITION,
                }
            }
            outcomes.push(outcome);
        }
        if changed {
            self.publish_for(&base, metadata, &mut outcomes).await;
        }
        outcomes
    }

    async fn create_partitions(
        &self,
        topic: String,
        count: i32,
        validate_only: bool,
    ) -> TopicOutcome {
        let base = self.controller_image();
        let mut metadata = (*base).clone();
        let mut outcome = TopicOutcome::ok(topic.clone(), count);
        let Some(existing) = metadata.topics.get_mut(&topic) else {
            outcome.error_code = code::UNKNOWN_TOPIC_OR_PARTITION;
            return outcome;
        };
        if count <= existing.partitions {
            outcome.error_code = code::INVALID_PARTITIONS;
            outcome.error_message = Some(format!(
                "Topic currently has {} partitions, which is higher than the requested {}.",
                existing.partitions, count
            ));
            return outcome;
        }
        if count > sluice_engine::constants::TOPIC_PARTITIONS_MAX {
            outcome.error_code = code::INVALID_PARTITIONS;
            return outcome;
        }
        let replication_factor = existing
            .placement
            .first()
            .map_or(1, |state| state.replicas.len() as i16);
        let first = existing.partitions;
        let placed =
            self.replica_lists(&base, &topic, first, count - first, replication_factor, &[]);
        let replica_lists = match placed {
            Ok(replica_lists) => replica_lists,
            Err((error_code, message)) => {
                outcome.error_code = error_code;
                outcome.error_message = Some(message);
                return outcome;
            }
        };
        outcome.replication_factor = replication_factor;
        if validate_only {
            return outcome;
        }
        let Some(existing) = metadata.topics.get_mut(&topic) else {
            outcome.error_code = code::UNKNOWN_TOPIC_OR_PARTITION;
            return outcome;
        };
        existing.placement.extend(
            replica_lists
                .into_iter()
                .map(|replicas| new_partition_state(&base, replicas)),
        );
        existing.partitions = count;
        outcome.topic_id = existing.id;
        if let Err(error) = self.publish(&base, metadata).await {
            outcome.error_code = error.code;
            outcome.error_message = Some(error.message);
        }
        outcome
    }

    async fn alter_configs(
        &self,
        topic: String,
        changes: Vec<ConfigChange>,
        validate_only: bool,
    ) -> TopicOutcome {
        let base = self.controller_image();
        let mut metadata = (*base).clone();
        let mut outcome = TopicOutcome::ok(topic.clone(), 0);
        let Some(existing) = metadata.topics.get_mut(&topic) else {
            outcome.error_code = code::UNKNOWN_TOPIC_OR_PARTITION;
            return outcome;
        };
        let mut configs = existing.configs.clone();
        for change in changes {
            let edit = |how| {
                let current = configs.get(&change.name).map(String::as_str);
                let value =
                    topic_config::edit_list(&change.name, current, how, change.value.as_deref())?;
                // The edited list is checked as a SET of it would be.
                topic_config::validate(&change.name, &value).map(|()| value)
            };
            let result = match change.operation {
                config_operation::SET => match &change.value {
                    Some(value) => topic_config::validate(&change.name, value).map(|()| {
                        configs.insert(change.name.clone(), value.clone());
                    }),
                    None => Err(format!("no value given to set '{}'", change.name)),
                },
                config_operation::DELETE => {
                    if topic_config::names().any(|name| name == change.name) {
                        configs.remove(&change.name);
                        Ok(())
                    } else {
                        Err(format!("unknown topic config '{}'", change.name))
                    }
                }
                config_operation::APPEND => edit(ListEdit::Append).map(|value| {
                    configs.insert(change.name.clone(), value);
                }),
                config_operation::SUBTRACT => edit(ListEdit::Subtract).map(|value| {
                    configs.insert(change.name.clone(), value);
                }),
                other => Err(format!("unknown config operation {other}")),
            };
            if let Err(message) = result {
                outcome.error_code = code::INVALID_CONFIG;
                outcome.error_message = Some(message);
                return outcome;
            }
        }
        if validate_only {
            return outcome;
        }
        existing.configs = configs;
        if let Err(error) = self.publish(&base, metadata).await {
            outcome.error_code = error.code;
            outcome.error_message = Some(error.message);
        }
        outcome
    }

    /// Producer ids come from blocks persisted in the metadata, so an id is
    /// never handed out twice, even across restarts.
    async fn allocate_producer_id(&self, controller: &Controller) -> i64 {
        {
            let mut ids = controller.ids.borrow_mut();
            if ids.next < ids.end {
                let id = ids.next;
                ids.next += 1;
                return id;
            }
        }
        let base = self.controller_image();
        let mut metadata = (*base).clone();
        let start = metadata.next_producer_id;
        metadata.next_producer_id = start + PRODUCER_ID_BLOCK;
        if let Err(error) = self.publish(&base, metadata).await {
            tracing::warn!(%error, "persisting producer ids failed");
            return -1;
        }
        let mut ids = controller.ids.borrow_mut();
        ids.next = start + 1;
        ids.end = start + PRODUCER_ID_BLOCK;
        start
    }

    /// AlterPartition: records leaders' new ISRs, each if it comes from
    /// the partition's current leader at its current leader and partition
    /// epochs (Kafka's checks and error codes), all in one metadata write.
    /// Members a change adds must be live: a fenced broker cannot rejoin
    /// before it registers again. A failed write fails every change it
    /// carried; those refused or already made are answered as they are.
    async fn alter_partitions(&self, changes: Vec<IsrChange>) -> Vec<Result<PartitionState, i16>> {
        let base = self.controller_image();
        let mut metadata = (*base).clone();
        let mut outcomes: Vec<Result<PartitionState, i16>> = Vec::with_capacity(changes.len());
        let mut written = Vec::new();
        for change in &changes {
            match apply_isr_change(&base, &mut metadata, change) {
                Ok((state, changed)) => {
                    if changed {
                        written.push(outcomes.len());
                    }
                    outcomes.push(Ok(state));
                }
                Err(error_code) => outcomes.push(Err(error_code)),
            }
        }
        if written.is_empty() {
            return outcomes;
        }
        if let Err(error) = self.publish(&base, metadata).await {
            tracing::warn!(%error, changes = written.len(), "ISR changes were not written");
            for index in written {
                outcomes[index] = Err(error.code);
            }
        }
        outcomes
    }

    /// Sends a controller request to shard 0 and returns its answer.
    pub async fn controller_call(&self, request: ControllerRequest) -> Option<ShardResponse> {
        self.mesh
            .call(ShardId(0), ShardRequest::Controller(request))
            .await
    }

    /// [`Broker::controller_call`] for a request that carries its own
    /// `timeout_ms` (CreateTopics, DeleteTopics, CreatePartitions,
    /// ElectLeaders, AlterPartitionReassignments), or
    /// whose wait the broker bounds (InitProducerId's id block, topics a
    /// Metadata request auto-creates, the coordinators' internal topics):
    /// `None` once that passes, which the handler answers with Kafka's
    /// error for it (REQUEST_TIMED_OUT, or a retriable one where Kafka
    /// does not wait). The change itself is not cut short: it
    /// runs on in a task of its own and may still take effect (a topic
    /// deleted after the answer), as in Kafka. Without the bound a data
    /// disk that stopped taking writes (frozen, stalled) left the request
    /// unanswered for as long as the stall lasted. A timeout of 0 or less
    /// waits for the end.
    pub(crate) async fn controller_call_within(
        self: &Rc<Self>,
        request: ControllerRequest,
        timeout_ms: i32,
    ) -> Option<Option<ShardResponse>> {
        let timeout_ms = match u64::try_from(timeout_ms) {
            Ok(timeout_ms) if timeout_ms > 0 => timeout_ms,
            _ => return Some(self.controller_call(request).await),
        };
        let broker = Rc::clone(self);
        let call =
            glommio::spawn_local(async move { broker.controller_call(request).await }).detach();
        glommio::timer::timeout(Duration::from_millis(timeout_ms), async {
            Ok(call.await.flatten())
        })
        .await
        .ok()
    }

    /// Creates an internal topic (`__consumer_offsets`,
    /// `__transaction_state`) if it does not exist yet, through the
    /// controller like any topic, and returns its partition count.
    ///
    /// Its replication factor is Kafka's setting (3 by default) capped at
    /// the cluster's size, the voters or the registered brokers whichever
    /// are more, so that a single node needs no setting; Kafka instead
    /// refuses to create it until enough brokers are up. While too few
    /// brokers are live for the factor, creation fails and the caller
    /// answers COORDINATOR_NOT_AVAILABLE, which clients retry.
    pub(crate) async fn ensure_internal_topic(
        self: &Rc<Self>,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        min_insync_replicas: Option<i16>,
    ) -> Result<i32, i16> {
        if let Some(topic) = self.metadata().topics.get(name) {
            return Ok(topic.partitions);
        }
        let cluster_size = self
            .config
            .cluster
            .voters
            .len()
            .max(self.metadata().brokers.len())
            .max(1);
        let replication_factor =
            replication_factor.min(i16::try_from(cluster_size).unwrap_or(i16::MAX));
        let mut configs = BTreeMap::from([
            ("cleanup.policy".to_string(), "compact".to_string()),
            // The coordinators bound their logs themselves; time retention
            // must never drop committed offsets or a live id's state.
            ("retention.ms".to_string(), "-1".to_string()),
            (
                "segment.bytes".to_string(),
                OFFSETS_TOPIC_SEGMENT_BYTES.to_string(),
            ),
            // Fifty partitions of preallocated segments would reserve
            // gigabytes for a few kilobytes of state.
            ("preallocate".to_string(), "false".to_string()),
        ]);
        if let Some(min) = min_insync_replicas {
            configs.insert(
                "min.insync.replicas".to_string(),
                min.clamp(1, replication_factor).to_string(),
            );
        }
        let topic = NewTopic {
            name: name.to_string(),
            partitions,
            replication_factor,
            assignments: Vec::new(),
            configs,
            validate_only: false,
        };
        // Bounded as an auto-creating Metadata request is: a creation
        // still under way is answered COORDINATOR_NOT_AVAILABLE, which
        // clients retry, and goes on (a data disk that stopped taking
        // writes held FindCoordinator for the metadata write's 30 s).
        match self
            .controller_call_within(
                ControllerRequest::CreateTopics(vec![topic]),
                AUTO_CREATE_WAIT_MS,
            )
            .await
        {
            None => {}
            Some(Some(ShardResponse::Topics(outcomes))) => {
                for outcome in outcomes {
                    if outcome.error_code != code::NONE
                        && outcome.error_code != code::TOPIC_ALREADY_EXISTS
                    {
                        tracing::warn!(topic = name, error_code = outcome.error_code, message = ?outcome.error_message, "creating an internal topic failed");
                    }
                }
            }
            Some(other) => {
                tracing::warn!(topic = name, ?other, "creating an internal topic failed")
            }
        }
        self.metadata()
            .topics
            .get(name)
            .map(|topic| topic.partitions)
            .ok_or(code::COORDINATOR_NOT_AVAILABLE)
    }
}

/// The answer to a controller request that could not reach the active
/// controller: every topic gets NOT_CONTROLLER (retriable), a producer-id
/// request gets no id.
fn not_controller(request: &ControllerRequest, reason: &str) -> ShardResponse {
    let outcome = |name: &str| TopicOutcome {
        error_code: code::NOT_CONTROLLER,
        error_message: Some(format!(
            "the active controller could not be reached: {reason}"
        )),
        ..TopicOutcome::ok(name.to_string(), 0)
    };
    match request {
        ControllerRequest::CreateTopics(topics) => {
            ShardResponse::Topics(topics.iter().map(|topic| outcome(&topic.name)).collect())
        }
        ControllerRequest::DeleteTopics(names) => {
            ShardResponse::Topics(names.iter().map(|name| outcome(name)).collect())
        }
        ControllerRequest::CreatePartitions { topic, .. }
        | ControllerRequest::AlterTopicConfigs { topic, .. } => {
            ShardResponse::Topics(vec![outcome(topic)])
        }
        ControllerRequest::AllocateProducerId => ShardResponse::ProducerId(-1),
        ControllerRequest::AlterPartitions(changes) => {
            ShardResponse::Partitions(vec![Err(code::NOT_CONTROLLER); changes.len()])
        }
        ControllerRequest::ShutDownBroker { .. } | ControllerRequest::ResignReplicas { .. } => {
            ShardResponse::Partition(Err(code::NOT_CONTROLLER))
        }
        ControllerRequest::AlterReassignments(reassignments) => ShardResponse::Reassignments(
            reassignments
                .iter()
                .map(|_| super::ReassignmentOutcome {
                    error_code: code::NOT_CONTROLLER,
                    error_message: Some(format!(
                        "the active controller could not be reached: {reason}"
                    )),
                })
                .collect(),
        ),
        ControllerRequest::ElectLeaders { .. } => ShardResponse::Elections(Err((
            code::NOT_CONTROLLER,
            format!("the active controller could not be reached: {reason}"),
        ))),
        ControllerRequest::AlterClientQuotas(_) => ShardResponse::ClientQuotas(Err((
            code::NOT_CONTROLLER,
            format!("the active controller could not be reached: {reason}"),
        ))),
        ControllerRequest::CreateAcls(_) => ShardResponse::AclsCreated(Err((
            code::NOT_CONTROLLER,
            format!("the active controller could not be reached: {reason}"),
        ))),
        ControllerRequest::DeleteAcls(_) => ShardResponse::AclsDeleted(Err((
            code::NOT_CONTROLLER,
            format!("the active controller could not be reached: {reason}"),
        ))),
        ControllerRequest::AlterScramCredentials { .. } => ShardResponse::ScramCredentials(Err((
            code::NOT_CONTROLLER,
            format!("the active controller could not be reached: {reason}"),
        ))),
    }
}

/// Binds the controller port for this process alone. glommio's own bind
/// sets SO_REUSEPORT, with which a second process started as the same
/// voter would bind the port too and the kernel would hand it part of the
/// other voters' connections: two members answering as one in the Raft
/// quorum. std's bind sets only SO_REUSEADDR (a restart may bind while the
/// old connections linger in TIME_WAIT, but not while a listener holds
/// the port).
/// Binds the controller port, retrying for [`PORT_HELD_WAIT`] while it is
/// in use: this node's previous process, stopped a moment ago, holds it
/// until the kernel has torn down that process's io_uring rings.
async fn bind_controller_port(
    address: std::net::SocketAddr,
) -> std::io::Result<glommio::net::TcpListener> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let deadline = Instant::now() + PORT_HELD_WAIT;
    let listener = loop {
        match std::net::TcpListener::bind(address) {
            Err(error)
                if error.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline =>
            {
                glommio::timer::sleep(PORT_HELD_RETRY).await;
            }
            bound => break bound?,
        }
    };
    // SAFETY: the descriptor is a listening socket just created and given
    // up by `listener`; the glommio listener owns it from here on.
    Ok(unsafe { glommio::net::TcpListener::from_raw_fd(listener.into_raw_fd()) })
}

/// Registers this broker (its id, incarnation, endpoint and rack) and
/// registers it again whenever the image stops showing it so: after a
/// restart (new incarnation) or when the controller fenced it. Proposals
/// from a follower are forwarded to the leader by Raft. A refusal because
/// another live broker holds the id is retried for a few sessions, then
/// given up (see [`Refusals`]).
async fn keep_registered(
    quorum: Quorum,
    me: BrokerInfo,
    session: Duration,
    stopping: Rc<Cell<bool>>,
    withdrawn: Rc<Cell<bool>>,
    registration: Rc<Registration>,
) {
    let mut refusals = Refusals::new(session);
    loop {
        let watched = quorum.clone();
        let wanted = me.clone();
        let stepped_out = Rc::clone(&withdrawn);
        quorum
            .changes()
            .wait_for(move || {
                let registered = watched.image().brokers.get(&wanted.id) == Some(&wanted);
                // Fenced because its storage fails: stays fenced until
                // it works again (`storage_health` wakes this).
                (!registered && watched.status().leader.is_some() && !stepped_out.get())
                    .then_some(())
            })
            .await;
        if stopping.get() {
            // Fenced by its own controlled shutdown: stays fenced.
            return;
        }
        if !quorum.is_observer() && previous_process_unfenced(&quorum.image(), &me) {
            // This node restarted (a crash) before the active controller
            // fenced its previous process, which may be in ISRs with data
            // this process does not have (its unwritten tail is lost). The
            // fence takes it out of them; registering over it first would
            // keep this process in them, electable. A voter's registration
            // goes straight into Raft, so it waits here; an observer's is
            // refused by the active controller until then.
            tracing::info!(
                "waiting for the active controller to fence this node's previous process before registering"
            );
            let watched = quorum.clone();
            let wanted = me.clone();
            quorum
                .changes()
                .wait_for(move || {
                    (!previous_process_unfenced(&watched.image(), &wanted)).then_some(())
                })
                .await;
            continue;
        }
        let deadline = Instant::now() + REGISTRATION_TIMEOUT;
        let record = MetadataRecord::RegisterBroker(me.clone());
        match quorum.write(vec![record], deadline).await {
            Ok(_) => refusals.accepted(),
            Err(error) => {
                if refusals.failed(error, &registration) {
                    return;
                }
                glommio::timer::sleep(REGISTRATION_RETRY_BACKOFF).await;
            }
        }
    }
}

/// Whether `me`'s node id is registered, unfenced, by another process (its
/// previous one) in a cluster with other brokers. Alone, a broker is in no
/// ISR with anyone, and replaces its own registration at once.
fn previous_process_unfenced(image: &ClusterMetadata, me: &BrokerInfo) -> bool {
    image
        .brokers
        .get(&me.id)
        .is_some_and(|registered| !registered.fenced && registered.incarnation != me.incarnation)
        && others_registered(image, me.id)
}

fn others_registered(image: &ClusterMetadata, node_id: i32) -> bool {
    image.brokers.keys().any(|id| *id != node_id)
}

/// On the active controller: fences the brokers it has not heard from for
/// `session` (Kafka's `broker.session.timeout.ms`), takes them out of the
/// ISR of their partitions, moves the leadership of their partitions to
/// another live member of the ISR, and gives partitions left without a
/// leader back to a live ISR member when one returns (see [`reconcile`]).
async fn watch_brokers(
    quorum: Quorum,
    lock: Rc<glommio::sync::Semaphore>,
    (node_id, incarnation): (i32, u64),
    policy: LeadershipPolicy,
) {
    // Brokers are judged only after a full session of this node leading:
    // a new leader has not heard from anyone yet.
    let mut leading_since: Option<(u64, Instant)> = None;
    let mut rebalanced_at = Instant::now();
    // The end of this node's last stall: silence before it is not evidence.
    let mut resumed_at = Instant::now();
    // The image version and live brokers of the last sweep that changed
    // nothing.
    let mut quiet: Option<(u64, Vec<i32>)> = None;
    loop {
        // Measured around the sleep alone: a timer that fires late means
        // the shard did not run, while time spent waiting for the
        // controller lock below (a topic creation holding it) is not a
        // stall and must not postpone fencing.
        let slept_at = Instant::now();
        glommio::timer::sleep(LIVENESS_CHECK_INTERVAL).await;
        let woke = Instant::now();
        let late = woke.duration_since(slept_at);
        if late > LIVENESS_CHECK_INTERVAL + CONTROLLER_STALL_TOLERANCE {
            tracing::warn!(
                stalled_ms = late.as_millis() as u64,
                "the liveness check ran late: this node was stalled, so brokers get a new session before any is fenced"
            );
            resumed_at = woke;
        }
        let status = quorum.status();
        if !status.can_decide {
            leading_since = None;
            continue;
        }
        let since = match leading_since {
            Some((term, since)) if term == status.term => since,
            _ => {
                let now = Instant::now();
                leading_since = Some((status.term, now));
                now
            }
        }
        .max(resumed_at);
        let Ok(_permit) = lock.acquire_permit(1).await else {
            return;
        };
        let base = quorum.image();
        let now = Instant::now();
        let mut fence: Vec<i32> = Vec::new();
        for broker in base.brokers.values() {
            let heard = quorum
                .last_heard(broker.id)
                .map_or(since, |heard| heard.max(since));
            if broker.fenced {
                continue;
            }
            if broker.id == node_id {
                // This process leads the quorum, so a registration of this
                // node by another process is of its dead predecessor.
                if broker.incarnation != incarnation && others_registered(&base, node_id) {
                    tracing::warn!(
                        broker = broker.id,
                        "fencing this node's previous process (restarted before it was fenced)"
                    );
                    fence.push(broker.id);
                }
                continue;
            }
            // A peer talks to the quorum's leader, not to every voter: a
            // connection that closed before this node led (a restart, a
            // reconnect to the then leader) is evidence only once the peer
            // has had the grace to answer this leader.
            let gone = quorum.disconnected_since(broker.id).filter(|closed| {
                now.duration_since((*closed).max(since)) > DISCONNECTED_FENCE_GRACE
            });
            if let Some(closed) = gone {
                tracing::warn!(
                    broker = broker.id,
                    closed_ms_ago = now.duration_since(closed).as_millis() as u64,
                    "fencing a broker whose connection closed and that has not reconnected"
                );
                fence.push(broker.id);
            } else if now.duration_since(heard) > policy.session {
                tracing::warn!(
                    broker = broker.id,
                    silent_ms = now.duration_since(heard).as_millis() as u64,
                    "fencing a broker that stopped answering"
                );
                fence.push(broker.id);
            }
        }
        let live: Vec<i32> = base
            .live_brokers()
            .map(|broker| broker.id)
            .filter(|id| !fence.contains(id))
            .collect();
        let rebalance = policy
            .rebalance_interval
            .is_some_and(|interval| now.duration_since(rebalanced_at) >= interval);
        if rebalance {
            rebalanced_at = now;
        }
        // The sweep below depends only on the image and the live brokers:
        // when neither changed since a sweep that found nothing to do, it
        // would find nothing again, and at 10,000 partitions copying the
        // image ten times a second is most of a controller's idle work.
        let settled = (base.version, live.clone());
        if fence.is_empty() && !rebalance && quiet.as_ref() == Some(&settled) {
            continue;
        }
        let mut image = (*base).clone();
        for id in &fence {
            if let Some(broker) = image.brokers.get_mut(id) {
                broker.fenced = true;
            }
        }
        for topic in image.topics.values_mut() {
            for (partition, state) in topic.placement.iter_mut().enumerate() {
                if rebalance && prefer(state, &live) {
                    tracing::info!(topic = %topic.name, partition, leader = state.leader, "leadership back to the preferred replica");
                }
                if super::reassignment::finish(state, &live) {
                    tracing::info!(topic = %topic.name, partition, replicas = ?state.replicas, leader = state.leader, "reassignment completed");
                }
                if reconcile(state, &live, policy.unclean) == Reconciled::Unclean {
                    tracing::warn!(
                        topic = %topic.name,
                        partition,
                        leader = state.leader,
                        "unclean leader election: records the new leader lacks are lost"
                    );
                }
            }
        }
        let records = diff_records(&base, &image);
        if records.is_empty() {
            quiet = Some(settled);
            continue;
        }
        quiet = None;
        if let Err(error) = quorum
            .decide(status.term, records, now + METADATA_WRITE_TIMEOUT)
            .await
        {
            tracing::warn!(?error, "recording fenced brokers and leaders failed");
        }
    }
}

/// How the active controller moves leadership.
#[derive(Clone, Copy, Debug)]
struct LeadershipPolicy {
    /// Kafka's `broker.session.timeout.ms`.
    session: Duration,
    /// Kafka's `unclean.leader.election.enable`.
    unclean: bool,
    /// Kafka's `leader.imbalance.check.interval.seconds` when
    /// `auto.leader.rebalance.enable` is on; `None` when it is off.
    rebalance_interval: Option<Duration>,
}

/// Preferred leader election (Kafka's auto leader rebalance): gives the
/// leadership back to the first replica when it is live and in the ISR, so
/// that leaders spread again after a broker returns. Kafka only does this
/// once a broker's share of non-preferred leaders passes 10%; here every
/// partition is checked on each round. Returns whether it moved.
pub(super) fn prefer(state: &mut PartitionState, live: &[i32]) -> bool {
    let Some(preferred) = state.replicas.first().copied() else {
        return false;
    };
    if state.leader == preferred || !live.contains(&preferred) || !state.isr.contains(&preferred) {
        return false;
    }
    state.leader = preferred;
    state.leader_epoch += 1;
    state.partition_epoch += 1;
    true
}

/// A new partition's state: every live replica is in sync (the log is
/// empty), and the first live replica leads.
fn new_partition_state(image: &ClusterMetadata, replicas: Vec<i32>) -> PartitionState {
    let live = |id: &i32| image.brokers.get(id).is_none_or(|broker| !broker.fenced);
    let isr: Vec<i32> = replicas.iter().copied().filter(live).collect();
    PartitionState {
        leader: isr.first().copied().unwrap_or(-1),
        isr,
        replicas,
        ..PartitionState::default()
    }
}

/// Applies one leader's ISR change to `metadata` after Kafka's checks
/// against it (liveness from `base`): the partition's state afterwards,
/// and whether the change altered it (a change made already is answered
/// with the state that has it, as Kafka does for a retried request).
fn apply_isr_change(
    base: &ClusterMetadata,
    metadata: &mut ClusterMetadata,
    change: &IsrChange,
) -> Result<(PartitionState, bool), i16> {
    let state = metadata
        .topics
        .get_mut(&change.topic)
        .and_then(|meta| {
            meta.placement
                .get_mut(usize::try_from(change.partition).ok()?)
        })
        .ok_or(code::UNKNOWN_TOPIC_OR_PARTITION)?;
    check_isr_change(state, change, |id| {
        base.brokers.get(&id).is_some_and(|broker| !broker.fenced)
    })?;
    if state.isr == change.isr {
        return Ok((state.clone(), false));
    }
    state.isr = change.isr.clone();
    state.partition_epoch += 1;
    let live: Vec<i32> = base.live_brokers().map(|broker| broker.id).collect();
    if super::reassignment::finish(state, &live) {
        tracing::info!(topic = %change.topic, partition = change.partition, replicas = ?state.replicas, leader = state.leader, "reassignment completed");
    }
    tracing::info!(
        topic = %change.topic,
        partition = change.partition,
        isr = ?state.isr,
        partition_epoch = state.partition_epoch,
        "ISR changed"
    );
    Ok((state.clone(), true))
}

/// Kafka's AlterPartition checks, in its order: the sender must lead the
/// partition at the recorded leader epoch, have seen the recorded partition
/// epoch, and ask for an ISR of replicas that holds itself; a member it
/// adds must be live.
fn check_isr_change(
    state: &PartitionState,
    change: &IsrChange,
    live: impl Fn(i32) -> bool,
) -> Result<(), i16> {
    if change.leader != state.leader {
        return Err(code::NOT_LEADER_OR_FOLLOWER);
    }
    if change.leader_epoch != state.leader_epoch {
        return Err(code::FENCED_LEADER_EPOCH);
    }
    if change.partition_epoch != state.partition_epoch {
        return Err(code::INVALID_UPDATE_VERSION);
    }
    let mut distinct = change.isr.clone();
    distinct.sort_unstable();
    distinct.dedup();
    if !change.isr.contains(&change.leader)
        || distinct.len() != change.isr.len()
        || change.isr.iter().any(|id| !state.replicas.contains(id))
    {
        return Err(code::INVALID_REQUEST);
    }
    if change
        .isr
        .iter()
        .any(|id| !state.isr.contains(id) && !live(*id))
    {
        return Err(code::INELIGIBLE_REPLICA);
    }
    Ok(())
}

/// What [`reconcile`] did to a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reconciled {
    Unchanged,
    Changed,
    /// A replica outside the ISR was made leader (unclean election).
    Unclean,
}

/// Brings a partition's state in line with the live brokers, as Kafka's
/// controller does on fencing and unfencing: fenced brokers leave the ISR
/// (except the last member, which keeps the only complete copy on record),
/// and a leader that is fenced or outside the ISR is replaced by the first
/// replica, in preference order, that is live and in the ISR. With none,
/// the partition is offline (leader -1) until an ISR member returns, unless
/// `unclean` allows any live replica. A new leader bumps the leader epoch;
/// every change bumps the partition epoch.
pub(super) fn reconcile(state: &mut PartitionState, live: &[i32], unclean: bool) -> Reconciled {
    let before = state.clone();
    let live_isr: Vec<i32> = state
        .isr
        .iter()
        .copied()
        .filter(|id| live.contains(id))
        .collect();
    if !live_isr.is_empty() {
        state.isr = live_isr;
    } else if state.leader >= 0 {
        state.isr = vec![state.leader];
    }
    let mut outcome = Reconciled::Changed;
    let leads =
        state.leader >= 0 && live.contains(&state.leader) && state.isr.contains(&state.leader);
    if !leads {
        let next = state
            .replicas
            .iter()
            .copied()
            .find(|id| state.isr.contains(id) && live.contains(id));
        let leader = match next {
            Some(id) => id,
            None => match state.replicas.iter().copied().find(|id| live.contains(id)) {
                Some(id) if unclean => {
                    state.isr = vec![id];
                    outcome = Reconciled::Unclean;
                    id
                }
                _ => -1,
            },
        };
        if leader != state.leader {
            state.leader = leader;
            state.leader_epoch += 1;
        }
    }
    if *state == before {
        return Reconciled::Unchanged;
    }
    state.partition_epoch += 1;
    outcome
}

/// What every shard has applied, shared by the publisher task and the
/// operations waiting on it.
#[derive(Default)]
pub(super) struct PublishedState {
    version: Cell<u64>,
    signal: Signal,
}

/// Publishes each new image to every shard, in order, and records the
/// version all of them have applied.
async fn publish_images(
    mesh: Rc<sluice_engine::Mesh<ShardRequest, ShardResponse>>,
    quorum: Quorum,
    published: Rc<PublishedState>,
) {
    loop {
        let current = published.version.get();
        let watched = quorum.clone();
        let image = quorum
            .changes()
            .wait_for(move || {
                let image = watched.image();
                (image.version > current).then_some(image)
            })
            .await;
        let calls = (0..mesh.shards()).map(|shard| {
            mesh.call(
                ShardId(shard as u16),
                ShardRequest::ApplyMetadata(Arc::clone(&image)),
            )
        });
        futures_lite_join_all(calls.collect()).await;
        published.version.set(image.version);
        published.signal.notify();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(replicas: &[i32], isr: &[i32], leader: i32) -> PartitionState {
        PartitionState {
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader,
            leader_epoch: 4,
            partition_epoch: 9,
            ..PartitionState::default()
        }
    }

    #[test]
    fn a_fenced_leader_is_replaced_from_the_isr_and_leaves_it() {
        let mut partition = state(&[1, 2, 3], &[1, 2, 3], 1);
        assert_eq!(
            reconcile(&mut partition, &[2, 3], false),
            Reconciled::Changed
        );
        assert_eq!((partition.leader, partition.isr.clone()), (2, vec![2, 3]));
        assert_eq!((partition.leader_epoch, partition.partition_epoch), (5, 10));
        // Nothing more to do while the same brokers are live.
        assert_eq!(
            reconcile(&mut partition, &[2, 3], false),
            Reconciled::Unchanged
        );
        // A returning broker is not put back in the ISR by the controller:
        // its leader does that once it has caught up.
        assert_eq!(
            reconcile(&mut partition, &[1, 2, 3], false),
            Reconciled::Unchanged
        );
    }

    #[test]
    fn a_fenced_follower_only_leaves_the_isr() {
        let mut partition = state(&[1, 2, 3], &[1, 2, 3], 1);
        assert_eq!(
            reconcile(&mut partition, &[1, 2], false),
            Reconciled::Changed
        );
        assert_eq!((partition.leader, partition.isr.clone()), (1, vec![1, 2]));
        assert_eq!((partition.leader_epoch, partition.partition_epoch), (4, 10));
    }

    #[test]
    fn the_last_isr_member_stays_on_record_and_leads_again_when_it_returns() {
        let mut partition = state(&[1, 2, 3], &[1], 1);
        assert_eq!(
            reconcile(&mut partition, &[2, 3], false),
            Reconciled::Changed
        );
        assert_eq!((partition.leader, partition.isr.clone()), (-1, vec![1]));
        assert_eq!(
            reconcile(&mut partition, &[2, 3], false),
            Reconciled::Unchanged
        );
        assert_eq!(
            reconcile(&mut partition, &[1, 2, 3], false),
            Reconciled::Changed
        );
        assert_eq!((partition.leader, partition.isr.clone()), (1, vec![1]));
        assert_eq!(partition.leader_epoch, 6);
    }

    #[test]
    fn preferred_election_moves_leadership_back_only_to_a_live_isr_member() {
        let mut partition = state(&[1, 2, 3], &[2, 3], 2);
        assert!(!prefer(&mut partition, &[1, 2, 3]), "1 is not in the ISR");
        partition.isr = vec![2, 3, 1];
        assert!(!prefer(&mut partition, &[2, 3]), "1 is not live");
        assert!(prefer(&mut partition, &[1, 2, 3]));
        assert_eq!((partition.leader, partition.leader_epoch), (1, 5));
        assert!(!prefer(&mut partition, &[1, 2, 3]));
    }

    #[test]
    fn unclean_election_takes_a_live_replica_outside_the_isr() {
        let mut partition = state(&[1, 2, 3], &[1], 1);
        assert_eq!(reconcile(&mut partition, &[3], true), Reconciled::Unclean);
        assert_eq!((partition.leader, partition.isr.clone()), (3, vec![3]));
    }

    #[test]
    fn a_batch_of_isr_changes_is_checked_and_applied_change_by_change() {
        let mut base = ClusterMetadata::default();
        for id in 1..=3 {
            base.brokers.insert(
                id,
                BrokerInfo {
                    id,
                    incarnation: 1,
                    host: "127.0.0.1".to_string(),
                    port: 9092,
                    rack: None,
                    fenced: id == 3,
                    endpoints: Vec::new(),
                },
            );
        }
        base.topics.insert(
            "t".to_string(),
            TopicMetadata {
                name: "t".to_string(),
                id: [1; 16],
                partitions: 3,
                configs: BTreeMap::new(),
                placement: vec![
                    state(&[1, 2, 3], &[1, 2], 1),
                    state(&[2, 1, 3], &[2, 1], 2),
                    state(&[1, 3, 2], &[1], 1),
                ],
            },
        );
        let change = |partition, leader, isr: &[i32]| IsrChange {
            topic: "t".to_string(),
            partition,
            leader,
            leader_epoch: 4,
            partition_epoch: 9,
            isr: isr.to_vec(),
        };
        let mut image = base.clone();
        // Per change: the ISR and partition epoch after it, and whether it
        // changed the partition; or the error code.
        type Outcome = Result<(Vec<i32>, i32, bool), i16>;
        let outcomes: Vec<Outcome> = [
            change(0, 1, &[1]),
            change(1, 2, &[2, 1]),
            change(2, 1, &[1, 3]),
            change(2, 2, &[1]),
            change(7, 1, &[1]),
        ]
        .iter()
        .map(|change| {
            apply_isr_change(&base, &mut image, change)
                .map(|(state, changed)| (state.isr, state.partition_epoch, changed))
        })
        .collect();
        assert_eq!(
            outcomes,
            vec![
                Ok((vec![1], 10, true)),
                Ok((vec![2, 1], 9, false)),
                Err(code::INELIGIBLE_REPLICA),
                Err(code::NOT_LEADER_OR_FOLLOWER),
                Err(code::UNKNOWN_TOPIC_OR_PARTITION),
            ]
        );
        let placement = &image.topics["t"].placement;
        assert_eq!(
            placement[0].isr,
            vec![1],
            "the accepted change is in the image"
        );
        assert_eq!(placement[1], base.topics["t"].placement[1]);
        assert_eq!(
            placement[2], base.topics["t"].placement[2],
            "refused changes leave no trace"
        );
    }

    #[test]
    fn isr_changes_are_checked_as_kafka_checks_them() {
        let partition = state(&[1, 2, 3], &[1, 2], 1);
        let change = |leader, leader_epoch, partition_epoch, isr: &[i32]| IsrChange {
            topic: "t".to_string(),
            partition: 0,
            leader,
            leader_epoch,
            partition_epoch,
            isr: isr.to_vec(),
        };
        let live = |id: i32| id != 3;
        assert_eq!(
            check_isr_change(&partition, &change(1, 4, 9, &[1]), live),
            Ok(())
        );
        assert_eq!(
            check_isr_change(&partition, &change(2, 4, 9, &[2]), live),
            Err(code::NOT_LEADER_OR_FOLLOWER)
        );
        assert_eq!(
            check_isr_change(&partition, &change(1, 3, 9, &[1]), live),
            Err(code::FENCED_LEADER_EPOCH)
        );
        assert_eq!(
            check_isr_change(&partition, &change(1, 4, 8, &[1]), live),
            Err(code::INVALID_UPDATE_VERSION)
        );
        for isr in [&[2][..], &[1, 1], &[1, 4]] {
            assert_eq!(
                check_isr_change(&partition, &change(1, 4, 9, isr), live),
                Err(code::INVALID_REQUEST),
                "{isr:?}"
            );
        }
        assert_eq!(
            check_isr_change(&partition, &change(1, 4, 9, &[1, 2, 3]), live),
            Err(code::INELIGIBLE_REPLICA)
        );
    }
}
