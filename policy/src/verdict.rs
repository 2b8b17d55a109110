//! The verdict function: the one definition of how rules decide a packet.
//!
//! The compiler's simulation and the agent's BPF map encoding are both held
//! to this function; the datapath tests compare against it.
//!
//! Order: `overrideDeny` beats `allow` beats `deny` beats the mode's default.
//! Among the rules of the winning action, the lowest id is "the deciding rule".

use bulkhead_api::policy::{Action, EnforcementMode, Protocol};
use bulkhead_api::rule_map::{CompiledRule, Direction};
use serde::Serialize;

/// What happens to a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    /// It passes.
    Allow,
    /// It is dropped.
    Deny,
}

/// The precedence rank of an action: higher wins.
pub fn precedence(action: Action) -> u8 {
    match action {
        Action::OverrideDeny => 3,
        Action::Allow => 2,
        Action::Deny => 1,
    }
}

/// Whether `rule` matches a packet of `protocol`/`port` between `subject` and `peer`.
pub fn rule_matches(
    rule: &CompiledRule,
    subject: u32,
    direction: Direction,
    peer: u32,
    protocol: Protocol,
    port: u16,
) -> bool {
    rule.direction == direction
        && rule.subjects.binary_search(&subject).is_ok()
        && (rule.any_peer || rule.peers.binary_search(&peer).is_ok())
        && (rule.ports.is_empty() || rule.ports.iter().any(|r| r.contains(protocol, port)))
}

/// The rule that decides the packet, if any matches: the highest-precedence
/// action, and among its rules the lowest id.
pub fn deciding_rule(
    rules: &[CompiledRule],
    subject: u32,
    direction: Direction,
    peer: u32,
    protocol: Protocol,
    port: u16,
) -> Option<&CompiledRule> {
    let mut best: Option<&CompiledRule> = None;
    for rule in rules {
        if !rule_matches(rule, subject, direction, peer, protocol, port) {
            continue;
        }
        best = match best {
            None => Some(rule),
            Some(b) => {
                let (rp, bp) = (precedence(rule.action), precedence(b.action));
                if rp > bp || (rp == bp && rule.id < b.id) {
                    Some(rule)
                } else {
                    Some(b)
                }
            }
        };
    }
    best
}

/// The verdict policy gives, as full enforcement would apply it: what
/// visibility mode reports as "would be".
pub fn policy_verdict(action: Option<Action>) -> Verdict {
    match action {
        Some(Action::Allow) => Verdict::Allow,
        Some(Action::Deny | Action::OverrideDeny) | None => Verdict::Deny,
    }
}

/// The verdict actually enforced in `mode`.
pub fn enforced(mode: EnforcementMode, action: Option<Action>) -> Verdict {
    match mode {
        EnforcementMode::Full => policy_verdict(action),
        EnforcementMode::Selective => match action {
            Some(Action::Deny | Action::OverrideDeny) => Verdict::Deny,
            Some(Action::Allow) | None => Verdict::Allow,
        },
        EnforcementMode::Visibility => Verdict::Allow,
    }
}
