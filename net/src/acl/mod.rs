//! Access control lists and the authorizer, in Kafka's model (KIP-11,
//! KIP-290's prefixed patterns): an ACL allows or denies one principal,
//! from one host, one operation on the resources a pattern names.
//!
//! A request is allowed when the principal is a super user, or when no
//! DENY ACL matches it and an ALLOW ACL does (READ, WRITE, DELETE and ALTER
//! imply DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS). A resource no
//! ACL names at all is open only under `allow.everyone.if.no.acl.found`.
//! The ACLs live in [`store`]; [`Authorizer`] is what handlers ask.

pub mod store;

use std::fmt;
use std::sync::Arc;

pub use store::{AclStore, SharedAcls, ACLS_FILE, ACLS_FILE_IMPORTED};

/// The cluster resource's one name.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// A literal pattern of this name matches every resource of its type.
pub const WILDCARD_RESOURCE: &str = "*";
/// An ACL of this principal matches every user.
pub const WILDCARD_PRINCIPAL: &str = "User:*";
/// An ACL of this host matches every address.
pub const WILDCARD_HOST: &str = "*";
/// The principal of a connection that did not authenticate.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// Generates an enum of Kafka's one-byte codes (`ResourceType`,
/// `PatternType`, `AclOperation`, `AclPermissionType`), with 0 kept for
/// UNKNOWN as Kafka keeps it.
macro_rules! kafka_codes {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $code:literal, $text:literal;)+ }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn code(self) -> i8 {
                match self {
                    $($name::$variant => $code,)+
                }
            }

            /// `None` for UNKNOWN (0) and codes Kafka does not define.
            pub fn of_code(code: i8) -> Option<$name> {
                match code {
                    $($code => Some($name::$variant),)+
                    _ => None,
                }
            }

            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// By Kafka's name, in any case (`topic`, `TOPIC`).
            pub fn of_name(name: &str) -> Option<$name> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|value| value.name().eq_ignore_ascii_case(name))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

kafka_codes!(
    /// Kafka's `ResourceType`. Delegation tokens and users are named so
    /// that their ACLs can be stored and listed; Sluice has no API that
    /// checks them.
    ResourceType {
        Any = 1, "ANY";
        Topic = 2, "TOPIC";
        Group = 3, "GROUP";
        Cluster = 4, "CLUSTER";
        TransactionalId = 5, "TRANSACTIONAL_ID";
        DelegationToken = 6, "DELEGATION_TOKEN";
        User = 7, "USER";
    }
);

kafka_codes!(
    /// Kafka's `PatternType`: ANY and MATCH appear in filters only.
    PatternType {
        Any = 1, "ANY";
        Match = 2, "MATCH";
        Literal = 3, "LITERAL";
        Prefixed = 4, "PREFIXED";
    }
);

kafka_codes!(
    /// Kafka's `AclOperation`: ANY appears in filters only.
    Operation {
        Any = 1, "ANY";
        All = 2, "ALL";
        Read = 3, "READ";
        Write = 4, "WRITE";
        Create = 5, "CREATE";
        Delete = 6, "DELETE";
        Alter = 7, "ALTER";
        Describe = 8, "DESCRIBE";
        ClusterAction = 9, "CLUSTER_ACTION";
        DescribeConfigs = 10, "DESCRIBE_CONFIGS";
        AlterConfigs = 11, "ALTER_CONFIGS";
        IdempotentWrite = 12, "IDEMPOTENT_WRITE";
        CreateTokens = 13, "CREATE_TOKENS";
        DescribeTokens = 14, "DESCRIBE_TOKENS";
    }
);

kafka_codes!(
    /// Kafka's `AclPermissionType`: ANY appears in filters only.
    Permission {
        Any = 1, "ANY";
        Deny = 2, "DENY";
        Allow = 3, "ALLOW";
    }
);

impl Operation {
    /// Whether an ALLOW ACL of `self` allows `wanted`: the operation
    /// itself, ALL, and Kafka's implications.
    fn allows(self, wanted: Operation) -> bool {
        self == wanted
            || self == Operation::All
            || match wanted {
                Operation::Describe => matches!(
                    self,
                    Operation::Read | Operation::Write | Operation::Delete | Operation::Alter
                ),
                Operation::DescribeConfigs => self == Operation::AlterConfigs,
                _ => false,
            }
    }

    /// Whether a DENY ACL of `self` denies `wanted`: implications do not
    /// carry over to denials, as in Kafka (denying READ leaves DESCRIBE).
    fn denies(self, wanted: Operation) -> bool {
        self == wanted || self == Operation::All
    }
}

/// One ACL: who may or may not do what, from where, to which resources.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub pattern_type: PatternType,
    pub resource_name: String,
    /// `Type:name`, e.g. `User:alice`; `User:*` for every user.
    pub principal: String,
    /// An address as the broker prints it, or `*`.
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclBinding {
    /// The binding a metadata image holds, if this broker knows its codes.
    pub fn from_stored(stored: &sluice_engine::StoredAcl) -> Option<AclBinding> {
        Some(AclBinding {
            resource_type: ResourceType::of_code(stored.resource_type)?,
            pattern_type: PatternType::of_code(stored.pattern_type)?,
            resource_name: stored.resource_name.clone(),
            principal: stored.principal.clone(),
            host: stored.host.clone(),
            operation: Operation::of_code(stored.operation)?,
            permission: Permission::of_code(stored.permission)?,
        })
    }

    /// The binding as the metadata image keeps it.
    pub fn to_stored(&self) -> sluice_engine::StoredAcl {
        sluice_engine::StoredAcl {
            resource_type: self.resource_type.code(),
            pattern_type: self.pattern_type.code(),
            resource_name: self.resource_name.clone(),
            principal: self.principal.clone(),
            host: self.host.clone(),
            operation: self.operation.code(),
            permission: self.permission.code(),
        }
    }

    /// Kafka's checks on a new ACL (the controller's `validateNewAcl`):
    /// concrete types everywhere, a name, a principal of the form
    /// `Type:name`, the cluster named `kafka-cluster`.
    pub fn validate(&self) -> Result<(), String> {
        if self.resource_type == ResourceType::Any {
            return Err("Invalid resourceType ANY".into());
        }
        if !matches!(
            self.pattern_type,
            PatternType::Literal | PatternType::Prefixed
        ) {
            return Err(format!("Invalid patternType {}", self.pattern_type));
        }
        if self.operation == Operation::Any {
            return Err("Invalid operation ANY".into());
        }
        if self.permission == Permission::Any {
            return Err("Invalid permissionType ANY".into());
        }
        if self.resource_name.is_empty() {
            return Err("Resource name should not be empty".into());
        }
        if self.resource_type == ResourceType::Cluster && self.resource_name != CLUSTER_NAME {
            return Err(format!(
                "The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
            ));
        }
        match self.principal.split_once(':') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
            _ => {
                return Err(format!(
                    "Could not parse principal from `{}` (no colon is found between the type and the name)",
                    self.principal
                ))
            }
        }
        if self.host.is_empty() {
            return Err("Invalid empty host".into());
        }
        Ok(())
    }

    /// Whether this ACL's pattern covers the resource `name` of its type.
    fn covers(&self, name: &str) -> bool {
        match self.pattern_type {
            PatternType::Literal => {
                self.resource_name == name || self.resource_name == WILDCARD_RESOURCE
            }
            PatternType::Prefixed => name.starts_with(&self.resource_name),
            PatternType::Any | PatternType::Match => false,
        }
    }

    fn names_requester(&self, requester: &Requester<'_>) -> bool {
        (self.principal == requester.principal || self.principal == WILDCARD_PRINCIPAL)
            && (self.host == requester.host || self.host == WILDCARD_HOST)
    }
}

impl fmt::Display for AclBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}:{} for {} from {} ({})",
            self.permission,
            self.operation,
            self.resource_type,
            self.resource_name,
            self.principal,
            self.host,
            self.pattern_type
        )
    }
}

/// What DescribeAcls and DeleteAcls select by: `None` and ANY match
/// everything; pattern type MATCH selects the ACLs that would apply to the
/// named resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: ResourceType,
    pub pattern_type: PatternType,
    pub resource_name: Option<String>,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclFilter {
    /// Every ACL.
    pub fn any() -> AclFilter {
        AclFilter {
            resource_type: ResourceType::Any,
            pattern_type: PatternType::Any,
            resource_name: None,
            principal: None,
            host: None,
            operation: Operation::Any,
            permission: Permission::Any,
        }
    }

    pub fn matches(&self, acl: &AclBinding) -> bool {
        let type_matches =
            self.resource_type == ResourceType::Any || self.resource_type == acl.resource_type;
        let pattern_matches = match (self.pattern_type, self.resource_name.as_deref()) {
            (PatternType::Any, None) | (PatternType::Match, None) => true,
            (PatternType::Any, Some(name)) => acl.resource_name == name,
            (PatternType::Match, Some(name)) => acl.covers(name),
            (concrete, name) => {
                acl.pattern_type == concrete && name.is_none_or(|name| acl.resource_name == name)
            }
        };
        type_matches
            && pattern_matches
            && self.principal.as_ref().is_none_or(|p| *p == acl.principal)
            && self.host.as_ref().is_none_or(|h| *h == acl.host)
            && (self.operation == Operation::Any || self.operation == acl.operation)
            && (self.permission == Permission::Any || self.permission == acl.permission)
    }
}

/// Who sent a request, as ACLs name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Requester<'a> {
    /// `User:<name>`, or `User:ANONYMOUS` without authentication.
    pub principal: &'a str,
    /// The client's address as text (`127.0.0.1`).
    pub host: &'a str,
    /// Named in `super_users`: allowed everything.
    pub super_user: bool,
}

/// The broker's authorizer: the ACLs every shard reads, and Kafka's
/// `allow.everyone.if.no.acl.found`.
#[derive(Debug)]
pub struct Authorizer {
    pub acls: Arc<SharedAcls>,
    pub allow_if_no_acl: bool,
}

impl Authorizer {
    /// Whether `requester` may do `operation` on the resource `name` of
    /// `resource_type`.
    pub fn authorize(
        &self,
        requester: &Requester<'_>,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        if requester.super_user {
            return true;
        }
        let store = self.acls.read();
        let mut any_acl = false;
        let mut allowed = false;
        for acl in store.covering(resource_type, name) {
            any_acl = true;
            if !acl.names_requester(requester) {
                continue;
            }
            match acl.permission {
                Permission::Deny if acl.operation.denies(operation) => return false,
                Permission::Allow if acl.operation.allows(operation) => allowed = true,
                _ => {}
            }
        }
        allowed || (!any_acl && self.allow_if_no_acl)
    }

    /// Whether `requester` may do `operation` on some resource of
    /// `resource_type` (Kafka's `authorizeByResourceType`, which decides
    /// whether a producer without IDEMPOTENT_WRITE on the cluster may be
    /// idempotent because it may write some topic): an ALLOW ACL for it
    /// on any pattern, unless a DENY on every resource of the type
    /// (literal `*`) overrides it.
    pub fn authorize_any(
        &self,
        requester: &Requester<'_>,
        operation: Operation,
        resource_type: ResourceType,
    ) -> bool {
        if requester.super_user {
            return true;
        }
        let store = self.acls.read();
        let mut allowed = false;
        for acl in store.of_type(resource_type) {
            if !acl.names_requester(requester) {
                continue;
            }
            match acl.permission {
                Permission::Deny
                    if acl.operation.denies(operation)
                        && acl.pattern_type == PatternType::Literal
                        && acl.resource_name == WILDCARD_RESOURCE =>
                {
                    return false
                }
                Permission::Allow if acl.operation.allows(operation) => allowed = true,
                _ => {}
            }
        }
        allowed || (store.is_empty() && self.allow_if_no_acl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn acl(
        resource_type: ResourceType,
        pattern_type: PatternType,
        name: &str,
        principal: &str,
        operation: Operation,
        permission: Permission,
    ) -> AclBinding {
        AclBinding {
            resource_type,
            pattern_type,
            resource_name: name.into(),
            principal: principal.into(),
            host: WILDCARD_HOST.into(),
            operation,
            permission,
        }
    }

    fn authorizer(acls: Vec<AclBinding>, allow_if_no_acl: bool) -> Authorizer {
        let mut store = AclStore::default();
        for binding in acls {
            store.insert(binding);
        }
        let shared = SharedAcls::new(None);
        shared.replace(store);
        Authorizer {
            acls: Arc::new(shared),
            allow_if_no_acl,
        }
    }

    /// `principal` as ACLs name it, e.g. `User:alice`.
    fn user(principal: &'static str) -> Requester<'static> {
        Requester {
            principal,
            host: "127.0.0.1",
            super_user: false,
        }
    }

    use Operation::{All, Alter, Describe, Read, Write};
    use PatternType::{Literal, Match, Prefixed};
    use Permission::{Allow, Deny};
    use ResourceType::{Cluster, Group, Topic, TransactionalId};

    #[test]
    fn codes_round_trip_and_unknown_is_none() {
        for operation in Operation::ALL {
            assert_eq!(Operation::of_code(operation.code()), Some(*operation));
        }
        assert_eq!(Operation::of_code(0), None);
        assert_eq!(ResourceType::of_code(8), None);
        assert_eq!(
            ResourceType::of_name("transactional_id"),
            Some(TransactionalId)
        );
    }

    #[test]
    fn allow_implies_describe_but_deny_does_not_carry_over() {
        let auth = authorizer(
            vec![
                acl(Topic, Literal, "t", "User:alice", Read, Allow),
                acl(Topic, Literal, "t", "User:bob", Describe, Allow),
                acl(Topic, Literal, "t", "User:bob", Read, Deny),
            ],
            false,
        );
        assert!(auth.authorize(&user("User:alice"), Read, Topic, "t"));
        assert!(auth.authorize(&user("User:alice"), Describe, Topic, "t"));
        assert!(!auth.authorize(&user("User:alice"), Write, Topic, "t"));
        assert!(!auth.authorize(&user("User:bob"), Read, Topic, "t"));
        assert!(auth.authorize(&user("User:bob"), Describe, Topic, "t"));
        assert!(!auth.authorize(&user("User:carol"), Describe, Topic, "t"));
    }

    #[test]
    fn deny_beats_allow_whatever_the_pattern() {
        let auth = authorizer(
            vec![
                acl(Topic, Literal, "*", "User:*", All, Allow),
                acl(Topic, Prefixed, "secret-", "User:alice", Write, Deny),
            ],
            false,
        );
        assert!(auth.authorize(&user("User:alice"), Write, Topic, "public"));
        assert!(!auth.authorize(&user("User:alice"), Write, Topic, "secret-plans"));
        assert!(auth.authorize(&user("User:alice"), Read, Topic, "secret-plans"));
        assert!(auth.authorize(&user("User:bob"), Write, Topic, "secret-plans"));
    }

    #[test]
    fn prefixed_patterns_cover_names_that_start_with_them() {
        let auth = authorizer(
            vec![acl(Group, Prefixed, "app-", "User:alice", Read, Allow)],
            false,
        );
        assert!(auth.authorize(&user("User:alice"), Read, Group, "app-1"));
        assert!(auth.authorize(&user("User:alice"), Read, Group, "app-"));
        assert!(!auth.authorize(&user("User:alice"), Read, Group, "app"));
        assert!(!auth.authorize(&user("User:alice"), Read, Topic, "app-1"));
    }

    #[test]
    fn hosts_must_match_unless_the_acl_says_any() {
        let mut only_local = acl(Topic, Literal, "t", "User:alice", Read, Allow);
        only_local.host = "10.0.0.1".into();
        let auth = authorizer(vec![only_local], false);
        assert!(!auth.authorize(&user("User:alice"), Read, Topic, "t"));
        let mut from_there = user("User:alice");
        from_there.host = "10.0.0.1";
        assert!(auth.authorize(&from_there, Read, Topic, "t"));
    }

    #[test]
    fn a_resource_without_acls_is_open_only_when_configured() {
        let other = acl(Topic, Literal, "other", "User:bob", Read, Allow);
        let closed = authorizer(vec![other.clone()], false);
        assert!(!closed.authorize(&user("User:alice"), Read, Topic, "t"));
        let open = authorizer(vec![other], true);
        assert!(open.authorize(&user("User:alice"), Read, Topic, "t"));
        // An ACL on the resource for someone else closes it again.
        assert!(!open.authorize(&user("User:alice"), Read, Topic, "other"));
    }

    #[test]
    fn super_users_pass_every_check() {
        let auth = authorizer(
            vec![acl(Cluster, Literal, CLUSTER_NAME, "User:root", All, Deny)],
            false,
        );
        let mut root = user("User:root");
        root.super_user = true;
        assert!(auth.authorize(&root, Alter, Cluster, CLUSTER_NAME));
        assert!(!auth.authorize(&user("User:root"), Alter, Cluster, CLUSTER_NAME));
    }

    #[test]
    fn authorize_any_sees_allows_on_any_pattern_and_wildcard_denies() {
        let auth = authorizer(
            vec![acl(Topic, Prefixed, "app-", "User:alice", Write, Allow)],
            false,
        );
        assert!(auth.authorize_any(&user("User:alice"), Write, Topic));
        assert!(!auth.authorize_any(&user("User:bob"), Write, Topic));
        let denied = authorizer(
            vec![
                acl(Topic, Prefixed, "app-", "User:alice", Write, Allow),
                acl(Topic, Literal, "*", "User:alice", Write, Deny),
            ],
            false,
        );
        assert!(!denied.authorize_any(&user("User:alice"), Write, Topic));
    }

    #[test]
    fn filters_select_as_kafka_does() {
        let literal = acl(Topic, Literal, "orders", "User:alice", Read, Allow);
        let prefixed = acl(Topic, Prefixed, "ord", "User:bob", Write, Deny);
        let wildcard = acl(Topic, Literal, "*", "User:carol", Read, Allow);
        let mut filter = AclFilter::any();
        assert!([&literal, &prefixed, &wildcard]
            .iter()
            .all(|acl| filter.matches(acl)));
        filter.pattern_type = Match;
        filter.resource_name = Some("orders".into());
        assert!([&literal, &prefixed, &wildcard]
            .iter()
            .all(|acl| filter.matches(acl)));
        filter.pattern_type = Literal;
        assert!(filter.matches(&literal));
        assert!(!filter.matches(&prefixed));
        assert!(!filter.matches(&wildcard));
        filter.pattern_type = PatternType::Any;
        filter.resource_name = None;
        filter.permission = Deny;
        assert!(filter.matches(&prefixed));
        assert!(!filter.matches(&literal));
        filter.permission = Permission::Any;
        filter.principal = Some("User:carol".into());
        assert!(filter.matches(&wildcard) && !filter.matches(&literal));
    }

    #[test]
    fn new_acls_are_validated() {
        let good = acl(Topic, Literal, "t", "User:alice", Read, Allow);
        assert!(good.validate().is_ok());
        let mut bad = good.clone();
        bad.pattern_type = Match;
        assert!(bad.validate().is_err());
        let mut bad = good.clone();
        bad.principal = "alice".into();
        assert!(bad.validate().is_err());
        let mut bad = good.clone();
        bad.resource_type = Cluster;
        assert!(bad.validate().is_err());
        bad.resource_name = CLUSTER_NAME.into();
        assert!(bad.validate().is_ok());
        let mut bad = good;
        bad.operation = Operation::Any;
        assert!(bad.validate().is_err());
    }
}
