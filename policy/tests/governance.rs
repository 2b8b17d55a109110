//! Rules that expire, and exceptions, against the compiler's clock: what is
//! allowed before the second of expiry is denied from it on, whether the
//! clock moved on a running compiler or a new one loaded the snapshot.

mod support;

use bulkhead_api::policy::Protocol::Tcp;
use bulkhead_api::SegmentationExceptionSpec;
use bulkhead_policy::exception::{self, DEFAULT_MAX_DURATION};
use bulkhead_policy::Verdict::{Allow, Deny};
use bulkhead_policy::{Change, Compiler, IdentityAllocation, Snapshot};
use jiff::Timestamp;
use support::*;

fn at(t: &str) -> Timestamp {
    t.parse().expect("time")
}

const EXPIRY: &str = "2026-04-01T12:00:00Z";

fn world() -> World {
    World::new()
        .ns("prod", &[("env", "prod")])
        .node("n1", "192.168.0.1", &[])
        .node("n2", "192.168.0.2", &[])
        .pod("prod", "web", "n1", "10.0.1.1", &[("app", "web")])
        .pod("prod", "cache", "n1", "10.0.1.2", &[("app", "cache")])
        .pod("prod", "report", "n2", "10.0.2.2", &[("app", "report")])
        .pod("prod", "db", "n2", "10.0.2.1", &[("app", "db")])
        .mapping("app-env", APP_ENV_MAPPING)
        .policy(
            "db",
            &format!(
                r#"
scope: {{selector: {{matchLabels: {{app: db}}}}}}
enforcement: full
owner: payments
contact: payments-oncall
ingress:
- {{name: from-web, action: allow, peers: [{{selector: {{matchLabels: {{app: web}}}}}}], ports: [{{protocol: TCP, port: 80}}]}}
- {{name: from-cache, action: allow, ticket: CHG-1, expires: "{EXPIRY}", peers: [{{selector: {{matchLabels: {{app: cache}}}}}}], ports: [{{protocol: TCP, port: 80}}]}}
"#
            ),
        )
}

fn compiler_at(snapshot: Snapshot, now: Timestamp) -> Compiler {
    let mut c = Compiler::new(Default::default(), IdentityAllocation::default());
    c.advance_clock(now);
    c.load(snapshot);
    c
}

fn rule_ids(c: &Compiler, rule: &str) -> Vec<u32> {
    let maps = c.output().rule_maps.values();
    let rules = maps.flat_map(|m| m.rules.iter());
    rules.filter(|r| r.rule == rule).map(|r| r.id).collect()
}

#[test]
fn an_expired_rule_leaves_the_rule_maps_at_its_second_and_the_others_keep_their_ids() {
    let snapshot = world().snap.clone();
    let before = at("2026-04-01T11:59:59Z");
    let mut running = compiler_at(snapshot.clone(), before);
    let web_id = rule_ids(&running, "from-web");
    assert_eq!(
        verdict(running.output(), "prod/cache", "prod/db", Tcp, 80),
        Allow
    );
    assert_eq!(running.next_expiry(), Some(at(EXPIRY)));
    assert!(running.expired_rules().is_empty());

    running.advance_clock(at(EXPIRY));
    assert_eq!(
        verdict(running.output(), "prod/cache", "prod/db", Tcp, 80),
        Deny,
        "expired at {EXPIRY}: full mode's default denies"
    );
    assert_eq!(
        verdict(running.output(), "prod/web", "prod/db", Tcp, 80),
        Allow
    );
    assert_eq!(rule_ids(&running, "from-web"), web_id, "ids did not move");
    assert!(rule_ids(&running, "from-cache").is_empty());
    assert_eq!(running.next_expiry(), None);
    let expired = running.expired_rules();
    assert_eq!(expired["db"], vec![("from-cache".to_string(), at(EXPIRY))]);

    let fresh = compiler_at(snapshot, at(EXPIRY));
    assert_eq!(
        fresh.output(),
        running.output(),
        "a clock moved equals a load at that time"
    );

    // Moving the expiry out again (a person extends it) brings the rule back.
    let mut spec = running.snapshot().policies["db"].clone();
    spec.ingress[1].expires = Some("2026-05-01T00:00:00Z".into());
    running.apply(Change::UpsertPolicy("db".into(), spec));
    assert_eq!(
        verdict(running.output(), "prod/cache", "prod/db", Tcp, 80),
        Allow
    );
}

#[test]
fn an_exception_allows_only_once_approved_and_only_until_it_expires() {
    let yaml = r#"
scope: {selector: {matchLabels: {app: db}}}
direction: ingress
peers: [{selector: {matchLabels: {app: report}}}]
ports: [{protocol: TCP, port: 5432}]
requester: alice
reason: quarterly report
ticket: REQ-1
expiresAt: "2026-04-02T00:00:00Z"
"#;
    let mut spec: SegmentationExceptionSpec = serde_yaml::from_str(yaml).expect("spec");
    let created = at("2026-04-01T00:00:00Z");
    let now = at("2026-04-01T10:00:00Z");
    let mut c = compiler_at(world().snap.clone(), now);
    let report_to_db = |c: &Compiler| verdict(c.output(), "prod/report", "prod/db", Tcp, 5432);
    assert_eq!(report_to_db(&c), Deny);

    let pending = exception::assess("q", &spec, created, now, DEFAULT_MAX_DURATION);
    assert!(pending.policy.is_none(), "pending is not enforced");

    spec.approved_by = Some("bob".into());
    let active = exception::assess("q", &spec, created, now, DEFAULT_MAX_DURATION);
    let name = exception::policy_name("q");
    c.apply(Change::UpsertPolicy(
        name.clone(),
        active.policy.expect("approved"),
    ));
    assert_eq!(report_to_db(&c), Allow);
    assert_eq!(
        verdict(c.output(), "prod/report", "prod/db", Tcp, 5433),
        Deny,
        "narrow"
    );
    assert_eq!(
        verdict(c.output(), "prod/web", "prod/db", Tcp, 5432),
        Deny,
        "narrow"
    );
    assert_eq!(
        c.next_expiry(),
        Some(at(EXPIRY)),
        "the policy's own rule expires first"
    );
    c.advance_clock(at(EXPIRY));
    assert_eq!(c.next_expiry(), Some(at("2026-04-02T00:00:00Z")));
    c.advance_clock(at("2026-04-02T00:00:00Z"));
    assert_eq!(report_to_db(&c), Deny, "expired");
    assert!(c.expired_rules().contains_key(&name));
}
