//! AlterUserScramCredentials (51, KIP-554): creates, replaces and removes
//! users' SCRAM credentials. The client sends the salted password, never
//! the password; the broker derives the keys from it at once and only they
//! go on: the controller checks the changes and writes them to the
//! metadata log, and a change is durable on the quorum before the answer.
//! It authenticates the next login on every shard of the controller's
//! broker at once, and on the others as they apply the log.

use std::rc::Rc;

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, RequestHeader,
};

use super::{encode, str_bytes, Session};
use crate::broker::{Broker, ControllerRequest, ShardResponse};
use crate::errors::code;
use crate::sasl::alter::{Deletion, Upsertion, UserOutcome};
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (0, 0);

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: AlterUserScramCredentialsRequest,
) -> Option<Pieces> {
    let version = header.request_api_version;
    let deletions: Vec<Deletion> = request
        .deletions
        .iter()
        .map(|deletion| Deletion {
            user: deletion.name.to_string(),
            mechanism: deletion.mechanism,
        })
        .collect();
    let upsertions: Vec<Upsertion> = request
        .upsertions
        .iter()
        .map(|upsertion| {
            Upsertion::from_salted_password(
                upsertion.name.to_string(),
                upsertion.mechanism,
                upsertion.iterations,
                upsertion.salt.to_vec(),
                &upsertion.salted_password,
            )
        })
        .collect();
    let refuse_all = |error_code: i16, message: &str| {
        let mut users: Vec<&str> = Vec::new();
        for user in deletions
            .iter()
            .map(|deletion| deletion.user.as_str())
            .chain(upsertions.iter().map(|upsertion| upsertion.user.as_str()))
        {
            if !users.contains(&user) {
                users.push(user);
            }
        }
        users
            .into_iter()
            .map(|user| UserOutcome {
                user: user.to_string(),
                error_code,
                message: Some(message.to_string()),
            })
            .collect::<Vec<_>>()
    };
    let outcomes = if !session.may_manage_security(broker) {
        refuse_all(
            code::CLUSTER_AUTHORIZATION_FAILED,
            "changing SCRAM credentials takes ALTER on the cluster (a super user without an authorizer)",
        )
    } else if deletions.is_empty() && upsertions.is_empty() {
        Vec::new()
    } else {
        let request = ControllerRequest::AlterScramCredentials {
            deletions: deletions.clone(),
            upsertions: upsertions.clone(),
        };
        match broker.controller_call(request).await {
            Some(ShardResponse::ScramCredentials(Ok(outcomes))) => outcomes,
            Some(ShardResponse::ScramCredentials(Err((error_code, message)))) => {
                refuse_all(error_code, &message)
            }
            _ => refuse_all(code::UNKNOWN_SERVER_ERROR, "the controller did not answer"),
        }
    };
    for outcome in outcomes.iter().filter(|outcome| outcome.error_code == 0) {
        tracing::info!(user = %outcome.user, "SCRAM credentials of a user changed");
    }
    let mut response = AlterUserScramCredentialsResponse::default();
    response.results = outcomes
        .into_iter()
        .map(|outcome| {
            let mut result = AlterUserScramCredentialsResult::default();
            result.user = str_bytes(&outcome.user);
            result.error_code = outcome.error_code;
            result.error_message = outcome.message.as_deref().map(str_bytes);
            result
        })
        .collect();
    Some(encode(&response, version))
}
