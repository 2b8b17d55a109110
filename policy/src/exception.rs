//! SegmentationExceptions as the compiler sees them: an approved exception
//! is one allow rule, expiring at `expiresAt`, in a policy of its own named
//! `exception:<name>` (a name no SegmentationPolicy can have).
//!
//! ```text
//!  SegmentationExceptionSpec + creationTimestamp ──► assess(.., now, max)
//!      ├─ state + message                  (the exception's status)
//!      └─ policy: Some(spec) when approved and within the bound; its rule
//!         expires at expiresAt, so the compiler's clock ends it
//! ```
//!
//! The policy does not depend on `now`: only the state does. So the
//! operator converts each exception once per change and the compiler's
//! clock (advanced at [`crate::Compiler::next_expiry`]) stops enforcing it.

use std::time::Duration;

use bulkhead_api::exception::ExceptionState;
use bulkhead_api::governance::Ownership;
use bulkhead_api::policy::{Action, Rule};
use bulkhead_api::rule_map::Direction;
use bulkhead_api::{SegmentationExceptionSpec, SegmentationPolicySpec};
use jiff::Timestamp;

/// The prefix of the policy an exception is compiled as.
pub const POLICY_PREFIX: &str = "exception:";

/// The longest an exception may run by default: 90 days after the request.
pub const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(90 * 24 * 3600);

/// The compiled policy's name for exception `name`.
pub fn policy_name(name: &str) -> String {
    format!("{POLICY_PREFIX}{name}")
}

/// The exception a compiled policy name stands for, if it is one.
pub fn parse_policy_name(policy: &str) -> Option<&str> {
    policy.strip_prefix(POLICY_PREFIX)
}

/// What the operator makes of one exception.
#[derive(Clone, Debug, PartialEq)]
pub struct Assessment {
    /// Where it stands at `now`.
    pub state: ExceptionState,
    /// Why, for a person.
    pub message: String,
    /// The policy to compile: approved and within the bound (expired ones
    /// too: the rule's expiry keeps it out of the rule maps).
    pub policy: Option<SegmentationPolicySpec>,
}

/// Judges exception `name` requested at `created`, at `now`, allowing at most `max`.
pub fn assess(
    name: &str,
    spec: &SegmentationExceptionSpec,
    created: Timestamp,
    now: Timestamp,
    max: Duration,
) -> Assessment {
    let refused = |message: String| Assessment {
        state: ExceptionState::Refused,
        message,
        policy: None,
    };
    let expires = match spec.expires_at.parse::<Timestamp>() {
        Ok(t) => t,
        Err(e) => {
            let at = &spec.expires_at;
            return refused(format!(
                "spec.expiresAt: {at:?} is not an RFC 3339 time: {e}"
            ));
        }
    };
    let span = expires.duration_since(created);
    if span.is_negative() {
        return refused(format!(
            "spec.expiresAt {expires} is before the request ({created})"
        ));
    }
    if span.unsigned_abs() > max {
        let days = max.as_secs() / 86_400;
        return refused(format!(
            "spec.expiresAt {expires} is more than {days} days after the request ({created}): request a shorter exception"
        ));
    }
    let policy = spec.approved_by.as_ref().map(|_| compiled(name, spec));
    let (state, message) = match &spec.approved_by {
        _ if expires <= now => (
            ExceptionState::Expired,
            format!("expired at {expires}: no longer enforced"),
        ),
        None => (
            ExceptionState::Pending,
            format!(
                "requested by {}; waiting for an approval (kubectl bulkhead exception approve {name})",
                spec.requester
            ),
        ),
        Some(by) => (
            ExceptionState::Active,
            format!("approved by {by}; enforced until {expires}"),
        ),
    };
    Assessment {
        state,
        message,
        policy,
    }
}

/// The policy of an exception that its status says the operator enforces
/// (state Active, for the exception's current generation): what a tool
/// outside the operator (a report, `simulate`) counts. Without a status, or
/// with a stale one, it is not counted: only the operator judged whether it
/// was approved in time.
pub fn enforced(
    name: &str,
    spec: &SegmentationExceptionSpec,
    status: Option<&bulkhead_api::SegmentationExceptionStatus>,
    generation: Option<i64>,
) -> Option<SegmentationPolicySpec> {
    let status = status?;
    let current = match (status.observed_generation, generation) {
        (Some(seen), Some(now)) => seen == now,
        _ => true,
    };
    (current && status.state == Some(ExceptionState::Active) && spec.approved_by.is_some())
        .then(|| compiled(name, spec))
}

/// The one-rule policy an approved exception compiles to.
fn compiled(name: &str, spec: &SegmentationExceptionSpec) -> SegmentationPolicySpec {
    let rule = Rule {
        name: Some(format!("exception {name}")),
        ownership: Ownership {
            owner: Some(spec.requester.clone()),
            contact: spec.approved_by.clone(),
            ticket: Some(spec.ticket.clone()),
            review_by: None,
        },
        expires: Some(spec.expires_at.clone()),
        action: Action::Allow,
        peers: spec.peers.clone(),
        ports: spec.ports.clone(),
    };
    let (ingress, egress) = match spec.direction {
        Direction::Ingress => (vec![rule], Vec::new()),
        Direction::Egress => (Vec::new(), vec![rule]),
    };
    SegmentationPolicySpec {
        ownership: Ownership::default(),
        scope: spec.scope.clone(),
        enforcement: None,
        ingress,
        egress,
        promotion: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(approved: Option<&str>, expires: &str) -> SegmentationExceptionSpec {
        let mut s: SegmentationExceptionSpec = serde_yaml::from_str(
            r#"
scope: {selector: {matchLabels: {app: db}}}
direction: ingress
peers: [{selector: {matchLabels: {app: report}}}]
ports: [{protocol: TCP, port: 5432}]
requester: alice
reason: quarterly report
ticket: REQ-1
expiresAt: "2026-01-01T00:00:00Z"
"#,
        )
        .expect("spec");
        s.approved_by = approved.map(str::to_string);
        s.expires_at = expires.into();
        s
    }

    fn at(t: &str) -> Timestamp {
        t.parse().expect("time")
    }

    #[test]
    fn only_an_active_current_status_counts_outside_the_operator() {
        use bulkhead_api::SegmentationExceptionStatus;
        let approved = spec(Some("bob"), "2026-01-01T00:00:00Z");
        let status = |state, generation| SegmentationExceptionStatus {
            observed_generation: generation,
            state: Some(state),
            ..Default::default()
        };
        let active = status(ExceptionState::Active, Some(2));
        let policy = enforced("x", &approved, Some(&active), Some(2)).expect("active");
        assert_eq!(
            Some(policy),
            assess(
                "x",
                &approved,
                at("2025-12-01T00:00:00Z"),
                at("2025-12-02T00:00:00Z"),
                DEFAULT_MAX_DURATION
            )
            .policy
        );
        assert!(
            enforced("x", &approved, None, Some(2)).is_none(),
            "no status"
        );
        assert!(
            enforced("x", &approved, Some(&active), Some(3)).is_none(),
            "stale status"
        );
        for state in [
            ExceptionState::Pending,
            ExceptionState::Expired,
            ExceptionState::Refused,
        ] {
            assert!(
                enforced("x", &approved, Some(&status(state, Some(2))), Some(2)).is_none(),
                "{state:?}"
            );
        }
        let unapproved = spec(None, "2026-01-01T00:00:00Z");
        assert!(
            enforced("x", &unapproved, Some(&active), Some(2)).is_none(),
            "no approver"
        );
    }

    #[test]
    fn pending_then_active_then_expired_with_the_same_policy() {
        let created = at("2025-12-01T00:00:00Z");
        let max = DEFAULT_MAX_DURATION;
        let pending = assess(
            "x",
            &spec(None, "2026-01-01T00:00:00Z"),
            created,
            created,
            max,
        );
        assert_eq!(pending.state, ExceptionState::Pending);
        assert!(pending.policy.is_none(), "enforced before approval");

        let approved = spec(Some("bob"), "2026-01-01T00:00:00Z");
        let active = assess("x", &approved, created, at("2025-12-31T23:59:59Z"), max);
        assert_eq!(active.state, ExceptionState::Active);
        let policy = active.policy.clone().expect("compiled");
        assert_eq!(policy.ingress.len(), 1);
        assert_eq!(
            policy.ingress[0].expires.as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
        assert_eq!(policy.enforcement, None, "an exception sets no mode");

        let expired = assess("x", &approved, created, at("2026-01-01T00:00:00Z"), max);
        assert_eq!(expired.state, ExceptionState::Expired);
        assert_eq!(
            expired.policy, active.policy,
            "the compiler's clock ends it, not a new policy"
        );
    }

    #[test]
    fn too_long_or_unparsable_or_backwards_is_refused_naming_the_field() {
        let created = at("2025-12-01T00:00:00Z");
        let max = DEFAULT_MAX_DURATION;
        let ok = assess(
            "x",
            &spec(Some("bob"), "2026-03-01T00:00:00Z"),
            created,
            created,
            max,
        );
        assert_eq!(
            ok.state,
            ExceptionState::Active,
            "exactly 90 days is allowed"
        );
        for expires in ["2026-03-01T00:00:01Z", "soon", "2025-11-30T00:00:00Z"] {
            let a = assess("x", &spec(Some("bob"), expires), created, created, max);
            assert_eq!(a.state, ExceptionState::Refused, "{expires}");
            assert!(a.message.starts_with("spec.expiresAt"), "{}", a.message);
            assert!(a.policy.is_none());
        }
        let short = Duration::from_secs(7 * 86_400);
        let a = assess(
            "x",
            &spec(Some("bob"), "2026-01-01T00:00:00Z"),
            created,
            created,
            short,
        );
        assert!(a.message.contains("more than 7 days"), "{}", a.message);
    }
}
