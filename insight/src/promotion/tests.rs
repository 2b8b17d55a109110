use std::collections::BTreeMap;

use bulkhead_api::flow::{EndpointKind, FlowEndpoint, FlowReason, FlowVerdict, SCHEMA};
use bulkhead_api::promotion::PromotionGate;
use bulkhead_api::LabelSelector;

use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().expect(s)
}

fn gate(to: EnforcementMode, observed: &str, quiet: &str) -> Gate {
    Gate::parse(&Promotion {
        to,
        after: PromotionGate {
            observed_for: observed.into(),
            quiet_for: quiet.into(),
        },
    })
    .expect("a valid gate")
}

fn db_scope() -> Scope {
    Scope {
        selector: Some(LabelSelector::from_labels([("app", "db")])),
        cluster_wide: false,
    }
}

fn side(addr: &str, app: &str) -> FlowEndpoint {
    FlowEndpoint {
        address: addr.parse().expect("ip"),
        identity: 1000,
        labels: BTreeMap::from([("app".to_string(), app.to_string())]),
        kind: EndpointKind::Pod,
        name: Some(format!("shop/{app}-0")),
        namespace: Some("shop".into()),
        reported: true,
    }
}

/// web → db on 5432, seen ending at `end`, reported by `direction`'s node.
fn record(end: &str, direction: Direction, verdict: FlowVerdict, would: FlowVerdict) -> FlowRecord {
    let end = ts(end);
    FlowRecord {
        schema: SCHEMA.into(),
        start: end - SignedDuration::from_secs(10),
        end,
        node: "n1".into(),
        source: side("10.0.0.1", "web"),
        destination: side("10.0.0.2", "db"),
        port: 5432,
        protocol: Protocol::Tcp,
        direction,
        verdict,
        would_verdict: would,
        mode: EnforcementMode::Visibility,
        reason: FlowReason::Default,
        rule: None,
        flows: 3,
        packets: 30,
        bytes: 3000,
        service: None,
        source_hidden_by_snat: false,
    }
}

const CREATED: &str = "2026-01-01T00:00:00Z";

fn answer(records: &[FlowRecord]) -> Answer<'_> {
    Answer::Records {
        records,
        complete: true,
        lost: &[],
    }
}

#[test]
fn gates_parse_with_unit_suffixes_and_refuse_what_cannot_be_evaluated() {
    let g = gate(EnforcementMode::Full, "35d", "14d");
    assert_eq!(g.observed_for, SignedDuration::from_hours(35 * 24));
    assert_eq!(g.quiet_for, SignedDuration::from_hours(14 * 24));
    assert_eq!(
        gate(EnforcementMode::Full, "0s", "20s").quiet_for,
        SignedDuration::from_secs(20)
    );
    let bad = |to, observed: &str, quiet: &str| {
        Gate::parse(&Promotion {
            to,
            after: PromotionGate {
                observed_for: observed.into(),
                quiet_for: quiet.into(),
            },
        })
        .map_err(|e| e.to_string())
        .expect_err("refused")
    };
    assert_eq!(
        bad(EnforcementMode::Full, "35 days", "14d"),
        "promotion.after.observedFor: \"35 days\" is not a duration like 35d, 12h or 20s"
    );
    assert!(bad(EnforcementMode::Full, "35d", "2y").starts_with("promotion.after.quietFor"));
    assert!(bad(EnforcementMode::Full, "35d", "0s").contains("not longer than zero"));
    assert!(bad(EnforcementMode::Visibility, "35d", "14d").starts_with("promotion.to"));
}

#[test]
fn the_window_is_the_quiet_period_but_never_before_the_policy_existed() {
    let g = gate(EnforcementMode::Full, "35d", "14d");
    let now = ts("2026-03-01T00:00:00Z");
    assert_eq!(
        g.window(ts(CREATED), now),
        (ts("2026-02-15T00:00:00Z"), now)
    );
    let young = ts("2026-02-25T00:00:00Z");
    assert_eq!(g.window(young, now), (young, now));
    // Created this very second: still a window the collector accepts.
    let (since, until) = g.window(now, now);
    assert!(since < until);
}

#[test]
fn which_records_hold_the_gate_shut() {
    use Direction::{Egress, Ingress};
    use FlowVerdict::{Allow as A, Deny as D};
    let full = gate(EnforcementMode::Full, "35d", "14d");
    let selective = gate(EnforcementMode::Selective, "35d", "14d");
    let end = "2026-02-20T00:00:00Z";
    let explicit = |mut r: FlowRecord| {
        r.reason = FlowReason::Policy;
        r
    };
    let cases = [
        // (what, record, holds for full, holds for selective)
        (
            "db's ingress would be denied",
            record(end, Ingress, A, D),
            true,
            false,
        ),
        (
            "db's ingress denied by a deny rule",
            explicit(record(end, Ingress, A, D)),
            true,
            true,
        ),
        (
            "web's egress would be denied: web's business",
            record(end, Egress, A, D),
            false,
            false,
        ),
        (
            "already denied: nothing changes",
            record(end, Ingress, D, D),
            false,
            false,
        ),
        (
            "allowed either way",
            record(end, Ingress, A, A),
            false,
            false,
        ),
    ];
    for (what, r, for_full, for_selective) in cases {
        assert_eq!(full.holds_shut(&db_scope(), &r), for_full, "full: {what}");
        assert_eq!(
            selective.holds_shut(&db_scope(), &r),
            for_selective,
            "selective: {what}"
        );
    }
    let web = Scope {
        selector: Some(LabelSelector::from_labels([("app", "web")])),
        cluster_wide: false,
    };
    assert!(full.holds_shut(&web, &record(end, Egress, A, D)));
    let everyone = Scope {
        selector: None,
        cluster_wide: true,
    };
    assert!(full.holds_shut(&everyone, &record(end, Egress, A, D)));
    assert!(full.holds_shut(&everyone, &record(end, Ingress, A, D)));
    // After promotion the same flow is denied, and still counts against it.
    assert!(full.denied_when_promoted(&db_scope(), &record(end, Ingress, D, D)));
}

#[test]
fn decisions_over_the_life_of_a_gate() {
    use Direction::{Egress, Ingress};
    use FlowVerdict::{Allow as A, Deny as D};
    let g = gate(EnforcementMode::Full, "35d", "14d");
    let created = ts(CREATED);
    let noisy = vec![
        record("2026-02-10T00:00:00Z", Ingress, A, D),
        record("2026-02-20T00:00:00Z", Ingress, A, D),
        record("2026-02-21T00:00:00Z", Egress, A, D), // web's, not db's
        record("2026-02-22T00:00:00Z", Ingress, A, A),
    ];
    let lost = [("n2".to_string(), 7)];
    let cases: Vec<(&str, &str, Answer<'_>, GateState, Option<&str>)> = vec![
        (
            "young and quiet",
            "2026-01-20T00:00:00Z",
            answer(&[]),
            GateState::Observing,
            Some("2026-02-05T00:00:00Z"),
        ),
        (
            "old enough and quiet",
            "2026-02-06T00:00:00Z",
            answer(&[]),
            GateState::Open,
            Some("2026-02-05T00:00:00Z"),
        ),
        // The last would-deny of db's ends 2026-02-20; 14 days on is 03-06.
        (
            "a would-deny in the window",
            "2026-02-25T00:00:00Z",
            answer(&noisy),
            GateState::Blocked,
            Some("2026-03-06T00:00:00Z"),
        ),
        (
            "young and noisy: the later of both",
            "2026-01-10T00:00:00Z",
            answer(&noisy[..1]),
            GateState::Blocked,
            Some("2026-02-24T00:00:00Z"),
        ),
        (
            "collector down",
            "2026-03-10T00:00:00Z",
            Answer::Unavailable("connection refused"),
            GateState::Unknown,
            None,
        ),
        (
            "truncated answer without a would-deny in scope",
            "2026-03-10T00:00:00Z",
            Answer::Records {
                records: &noisy[2..],
                complete: false,
                lost: &[],
            },
            GateState::Unknown,
            None,
        ),
        (
            "truncated, but one in scope is enough to stay shut",
            "2026-02-25T00:00:00Z",
            Answer::Records {
                records: &noisy,
                complete: false,
                lost: &[],
            },
            GateState::Blocked,
            Some("2026-03-06T00:00:00Z"),
        ),
        (
            "records lost in the window",
            "2026-03-10T00:00:00Z",
            Answer::Records {
                records: &[],
                complete: true,
                lost: &lost,
            },
            GateState::Unknown,
            None,
        ),
    ];
    for (what, now, answer, state, opens_at) in cases {
        let d = decide(&g, &db_scope(), created, ts(now), answer);
        assert_eq!(d.state, state, "{what}: {}", d.message);
        assert_eq!(d.opens_at, opens_at.map(ts), "{what}");
    }
}

#[test]
fn a_bucket_that_reaches_into_the_window_counts_and_one_that_ends_before_it_does_not() {
    use Direction::Ingress;
    use FlowVerdict::{Allow as A, Deny as D};
    let g = gate(EnforcementMode::Full, "0s", "20s");
    let now = ts("2026-01-01T12:00:50Z");
    // The window is [12:00:30, 12:00:50); the query reaches an hour back.
    assert_eq!(
        g.query_since(g.window(ts(CREATED), now).0),
        ts("2026-01-01T11:00:30Z")
    );
    let bucket = |start: &str, end: &str| {
        let mut r = record(end, Ingress, A, D);
        r.start = ts(start);
        r
    };
    let inside = [bucket("2026-01-01T12:00:00Z", "2026-01-01T12:01:00Z")];
    let d = decide(&g, &db_scope(), ts(CREATED), now, answer(&inside));
    assert_eq!(d.state, GateState::Blocked, "{}", d.message);
    let before = [bucket("2026-01-01T11:59:00Z", "2026-01-01T12:00:00Z")];
    let d = decide(&g, &db_scope(), ts(CREATED), now, answer(&before));
    assert_eq!(d.state, GateState::Open, "{}", d.message);
    let long = gate(EnforcementMode::Full, "35d", "14d");
    assert_eq!(long.query_since(now), ts("2025-12-31T12:00:50Z"));
}

#[test]
fn the_sample_names_the_latest_edge_with_its_flows_and_the_message_says_why() {
    use Direction::Ingress;
    use FlowVerdict::{Allow as A, Deny as D};
    let g = gate(EnforcementMode::Full, "35d", "14d");
    let mut other = record("2026-02-19T00:00:00Z", Ingress, A, D);
    other.source = side("10.0.0.9", "batch");
    let records = [
        record("2026-02-18T00:00:00Z", Ingress, A, D),
        other,
        record("2026-02-20T00:00:00Z", Ingress, A, D),
    ];
    let d = decide(
        &g,
        &db_scope(),
        ts(CREATED),
        ts("2026-02-25T00:00:00Z"),
        answer(&records),
    );
    let sample = d.last_would_deny.expect("a sample");
    assert_eq!(
        sample,
        WouldDenySample {
            seen: "2026-02-20T00:00:00Z".into(),
            from: "shop/web-0".into(),
            to: "shop/db-0".into(),
            port: 5432,
            protocol: Protocol::Tcp,
            flows: 6,
        }
    );
    assert!(
        d.message.starts_with(
            "6 flows from shop/web-0 to shop/db-0 on TCP/5432 would be denied in full mode"
        ),
        "{}",
        d.message
    );
    let down = decide(
        &g,
        &db_scope(),
        ts(CREATED),
        ts("2026-02-25T00:00:00Z"),
        Answer::Unavailable("timed out after 5s"),
    );
    assert!(
        down.message.contains("timed out after 5s"),
        "{}",
        down.message
    );
    assert!(
        down.message.contains("nothing is promoted"),
        "{}",
        down.message
    );
}
