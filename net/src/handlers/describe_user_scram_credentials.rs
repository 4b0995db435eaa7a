//! DescribeUserScramCredentials (50, KIP-554): per user, the SCRAM
//! mechanisms it has a credential for and their iteration counts; never a
//! salt or a key.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse, RequestHeader,
};

use super::{encode, str_bytes, Session};
use crate::broker::Broker;
use crate::errors::code;
use crate::sasl::alter::mechanism_code;
use crate::sasl::Mechanism;
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (0, 0);

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: DescribeUserScramCredentialsRequest,
) -> Option<Pieces> {
    let version = header.request_api_version;
    let mut response = DescribeUserScramCredentialsResponse::default();
    if !session.may_describe_security(broker) {
        response.error_code = code::CLUSTER_AUTHORIZATION_FAILED;
        response.error_message = Some(str_bytes(
            "describing SCRAM credentials takes DESCRIBE on the cluster (a super user without an authorizer)",
        ));
        return Some(encode(&response, version));
    }
    let Some(shared) = broker.config.sasl.credentials.as_ref() else {
        response.error_code = code::UNSUPPORTED_VERSION;
        response.error_message = Some(str_bytes("this broker has no SCRAM credential store"));
        return Some(encode(&response, version));
    };
    let store = shared.read();
    // Each user's credentials, by user; `None` for users named twice.
    let mut by_user: BTreeMap<String, Vec<(Mechanism, u32)>> = BTreeMap::new();
    for (user, mechanism, credential) in store.iter() {
        by_user
            .entry(user.to_string())
            .or_default()
            .push((mechanism, credential.iterations));
    }
    let named: Vec<String> = request
        .users
        .iter()
        .flatten()
        .map(|user| user.name.to_string())
        .collect();
    let result = |user: &str, error_code: i16, message: Option<String>| {
        let mut result = DescribeUserScramCredentialsResult::default();
        result.user = str_bytes(user);
        result.error_code = error_code;
        result.error_message = message.as_deref().map(str_bytes);
        result
    };
    if named.is_empty() {
        // Null or empty: every user with a credential.
        response.results = by_user
            .iter()
            .map(|(user, credentials)| found(result(user, code::NONE, None), credentials))
            .collect();
        return Some(encode(&response, version));
    }
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for user in &named {
        *seen.entry(user.as_str()).or_default() += 1;
    }
    // One result per distinct user, in the order of first mention.
    let mut answered: Vec<&str> = Vec::new();
    for user in &named {
        if answered.contains(&user.as_str()) {
            continue;
        }
        answered.push(user);
        let outcome = if seen[user.as_str()] > 1 {
            result(
                user,
                code::DUPLICATE_RESOURCE,
                Some(format!(
                    "Cannot describe SCRAM credentials for the same user twice in a single \
                     request: {user}"
                )),
            )
        } else {
            match by_user.get(user) {
                Some(credentials) => found(result(user, code::NONE, None), credentials),
                None => result(
                    user,
                    code::RESOURCE_NOT_FOUND,
                    Some(format!(
                        "Attempt to describe a user credential that does not exist: {user}"
                    )),
                ),
            }
        };
        response.results.push(outcome);
    }
    Some(encode(&response, version))
}

fn found(
    mut result: DescribeUserScramCredentialsResult,
    credentials: &[(Mechanism, u32)],
) -> DescribeUserScramCredentialsResult {
    result.credential_infos = credentials
        .iter()
        .map(|(mechanism, iterations)| {
            let mut info = CredentialInfo::default();
            info.mechanism = mechanism_code(*mechanism);
            info.iterations = i32::try_from(*iterations).unwrap_or(i32::MAX);
            info
        })
        .collect();
    result
}
