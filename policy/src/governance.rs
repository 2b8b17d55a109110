//! Ownership and review dates, judged against a clock the caller gives.
//!
//! ```text
//!  SegmentationPolicySpec ──► warnings(spec, now)   review overdue, rules expired
//!          │ rule by name ──► owner_of(spec, rule)  the rule's fields over its policy's
//!          ▼
//!  Compiler (its clock) ────► rules whose `expires` has passed leave the rule maps
//! ```

use bulkhead_api::governance::Ownership;
use bulkhead_api::policy::Rule;
use bulkhead_api::SegmentationPolicySpec;
use jiff::civil::Date;
use jiff::Timestamp;

/// The day (UTC) `now` falls on.
fn today(now: Timestamp) -> Date {
    now.to_zoned(jiff::tz::TimeZone::UTC).date()
}

/// Whether `review_by` (a `YYYY-MM-DD` date) is before the day of `now`.
/// An unparsable date counts as overdue: nobody can tell when it is due.
pub fn review_overdue(review_by: &str, now: Timestamp) -> bool {
    review_by.parse::<Date>().map_or(true, |d| d < today(now))
}

/// Every rule of a policy with its path (`ingress[0]`) and the name verdicts use.
pub fn rules(spec: &SegmentationPolicySpec) -> impl Iterator<Item = (String, &Rule)> {
    let ingress = spec
        .ingress
        .iter()
        .enumerate()
        .map(|(i, r)| (format!("ingress[{i}]"), r));
    let egress = spec
        .egress
        .iter()
        .enumerate()
        .map(|(i, r)| (format!("egress[{i}]"), r));
    ingress.chain(egress)
}

/// The rule verdicts and flow logs call `name` (its `name`, else its path).
pub fn rule_named<'s>(spec: &'s SegmentationPolicySpec, name: &str) -> Option<(String, &'s Rule)> {
    rules(spec).find(|(path, r)| r.name.as_deref().unwrap_or(path) == name || path == name)
}

/// Who answers for rule `name` of `spec`: the rule's own fields, then the
/// policy's. The policy's alone when the rule is not found.
pub fn owner_of(spec: &SegmentationPolicySpec, rule: Option<&str>) -> Ownership {
    match rule.and_then(|name| rule_named(spec, name)) {
        Some((_, r)) => r.ownership.or(&spec.ownership),
        None => spec.ownership.clone(),
    }
}

/// What a person should know about a policy's governance at `now`: an
/// overdue review (the policy's, each rule's own), rules that expired.
pub fn warnings(spec: &SegmentationPolicySpec, now: Timestamp) -> Vec<String> {
    let mut out = Vec::new();
    let owner = |o: &Ownership| match (&o.owner, &o.contact) {
        (Some(owner), Some(contact)) => format!(" (owner {owner}, contact {contact})"),
        (Some(owner), None) => format!(" (owner {owner})"),
        _ => String::new(),
    };
    if let Some(date) = spec.ownership.review_by.as_deref() {
        if review_overdue(date, now) {
            let who = owner(&spec.ownership);
            out.push(format!("review overdue: reviewBy {date} has passed{who}"));
        }
    }
    for (path, rule) in rules(spec) {
        let label = rule
            .name
            .as_deref()
            .map_or(path.clone(), |n| format!("{path} ({n})"));
        if let Some(date) = rule.ownership.review_by.as_deref() {
            if review_overdue(date, now) {
                let who = owner(&rule.ownership.or(&spec.ownership));
                out.push(format!(
                    "rule {label}: review overdue: reviewBy {date} has passed{who}"
                ));
            }
        }
        let expired = rule
            .expires
            .as_deref()
            .and_then(|e| e.parse::<Timestamp>().ok());
        if let Some(at) = expired.filter(|at| *at <= now) {
            out.push(format!(
                "rule {label} expired at {at}: it is no longer enforced"
            ));
        }
    }
    out
}

/// Whether the policy itself, or any of its rules, is past its review date.
pub fn overdue(spec: &SegmentationPolicySpec, now: Timestamp) -> bool {
    let dates = std::iter::once(&spec.ownership.review_by)
        .chain(rules(spec).map(|(_, r)| &r.ownership.review_by));
    dates.flatten().any(|d| review_overdue(d, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> SegmentationPolicySpec {
        serde_yaml::from_str(yaml).expect("spec")
    }

    const POLICY: &str = r##"
scope: {selector: {matchLabels: {app: db}}}
owner: payments
contact: payments-oncall@example.com
reviewBy: "2026-06-30"
ingress:
- name: from-api
  action: allow
  peers: [{selector: {matchLabels: {app: api}}}]
- action: allow
  owner: batch
  contact: "#batch"
  ticket: CHG-7
  reviewBy: "2026-03-01"
  expires: "2026-04-01T12:00:00Z"
"##;

    #[test]
    fn a_rule_inherits_what_it_does_not_set_and_its_own_fields_win() {
        let s = spec(POLICY);
        let named = owner_of(&s, Some("from-api"));
        assert_eq!(named.owner.as_deref(), Some("payments"));
        let own = owner_of(&s, Some("ingress[1]"));
        assert_eq!(own.owner.as_deref(), Some("batch"));
        assert_eq!(own.ticket.as_deref(), Some("CHG-7"));
        assert_eq!(own.review_by.as_deref(), Some("2026-03-01"));
        assert_eq!(
            owner_of(&s, Some("nope")).owner.as_deref(),
            Some("payments")
        );
    }

    #[test]
    fn warnings_follow_the_clock_day_by_day_and_to_the_second() {
        let s = spec(POLICY);
        let at = |t: &str| t.parse::<Timestamp>().expect("time");
        assert!(warnings(&s, at("2026-03-01T23:59:59Z")).is_empty());
        assert!(!overdue(&s, at("2026-03-01T23:59:59Z")));
        let w = warnings(&s, at("2026-03-02T00:00:00Z"));
        assert_eq!(
            w,
            ["rule ingress[1]: review overdue: reviewBy 2026-03-01 has passed (owner batch, contact #batch)"]
        );
        let w = warnings(&s, at("2026-04-01T12:00:00Z"));
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[1].contains("expired at 2026-04-01T12:00:00Z"), "{w:?}");
        let w = warnings(&s, at("2026-07-01T00:00:00Z"));
        assert!(
            w[0].starts_with("review overdue: reviewBy 2026-06-30 has passed (owner payments, contact payments-oncall@example.com)"),
            "{w:?}"
        );
        assert!(overdue(&s, at("2026-07-01T00:00:00Z")));
    }
}
