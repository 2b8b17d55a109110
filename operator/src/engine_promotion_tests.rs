//! Promotion gates end to end inside the operator: a real collector (the
//! SQLite store behind its HTTP API, on a loopback port) and the fake API
//! server, with the engine's clock handed in.

use std::net::SocketAddr;
use std::time::Duration;

use bulkhead_api::flow::{
    EndpointKind, FlowBatch, FlowEndpoint, FlowReason, FlowRecord, FlowVerdict, SCHEMA,
};
use bulkhead_api::policy::{EnforcementMode, Protocol};
use bulkhead_api::promotion::PromotionState;
use bulkhead_api::rule_map::Direction;
use bulkhead_api::{SegmentationPolicy, SegmentationPolicySpec};
use bulkhead_collector::api::{router, App};
use bulkhead_collector::auth::TokenFileAuth;
use bulkhead_collector::store::{Clock, SqliteStore, Store, StoreConfig};
use bulkhead_policy::snapshot::PodKey;
use bulkhead_policy::EndpointRef;
use jiff::Timestamp;
use serde_json::{json, Value};

use super::tests::{engine, feed_cluster, policy_spec, POLICIES, RULE_MAPS};
use super::*;
use crate::collector::Collector;
use crate::fixtures::FakeApi;
use crate::metrics::PolicyLabel;
use crate::promotion::{PolicyMeta, Promotions};

const NOW: &str = "2026-01-01T12:00:50Z";

fn ts(s: &str) -> Timestamp {
    s.parse().expect(s)
}

type Lab = Arc<App<SqliteStore, TokenFileAuth>>;

/// A collector on a loopback port whose store's clock reads `NOW`.
async fn collector(dir: &tempfile::TempDir) -> (Lab, SocketAddr) {
    let (clock, _) = Clock::manual(ts(NOW));
    let config = StoreConfig {
        clock: clock.clone(),
        ..StoreConfig::default()
    };
    let store = SqliteStore::open(dir.path(), config).expect("store");
    let auth = TokenFileAuth::parse("agent-token-0123456789 n1\n").expect("auth");
    let app = Arc::new(App::new(store, auth, clock));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let serving = router(app.clone());
    tokio::spawn(async move { axum::serve(listener, serving).await });
    (app, addr)
}

fn pod_side(addr: &str, app: &str) -> FlowEndpoint {
    FlowEndpoint {
        address: addr.parse().expect("ip"),
        identity: 1000,
        labels: [("app".to_string(), app.to_string())].into(),
        kind: EndpointKind::Pod,
        name: Some(format!("prod/{app}")),
        namespace: Some("prod".into()),
        reported: true,
    }
}

/// web → db on 5432 as db's node reports it, in the 10 s ending at `end`.
fn to_db(end: &str, verdict: FlowVerdict) -> FlowRecord {
    let end = ts(end);
    FlowRecord {
        schema: SCHEMA.into(),
        start: end - jiff::SignedDuration::from_secs(10),
        end,
        node: "n1".into(),
        source: pod_side("10.0.1.1", "web"),
        destination: pod_side("10.0.1.2", "db"),
        port: 5432,
        protocol: Protocol::Tcp,
        direction: Direction::Ingress,
        verdict,
        would_verdict: FlowVerdict::Deny,
        mode: EnforcementMode::Visibility,
        reason: FlowReason::Default,
        rule: None,
        flows: 2,
        packets: 20,
        bytes: 2000,
        service: None,
        source_hidden_by_snat: false,
    }
}

async fn store(lab: &Lab, id: &str, records: Vec<FlowRecord>) {
    let batch = FlowBatch {
        node: "n1".into(),
        batch_id: id.into(),
        records,
        losses: vec![],
    };
    lab.store.insert(&batch).await.expect("stored");
}

/// db's policy with a short gate, as a person applies it (and re-applies it).
fn gated_spec() -> Value {
    let mut spec = policy_spec();
    spec["enforcement"] = json!("visibility");
    spec["promotion"] = json!({"to": "full", "after": {"observedFor": "20s", "quietFor": "20s"}});
    spec
}

fn apply_policy(engine: &mut Engine, api: &FakeApi, created: &str) {
    let object = json!({"apiVersion": "bulkhead.dev/v1alpha1", "kind": "SegmentationPolicy",
        "metadata": {"name": "db", "generation": 1, "creationTimestamp": created},
        "spec": gated_spec()});
    api.put(&format!("{POLICIES}/db"), object.clone());
    let obj: SegmentationPolicy = serde_json::from_value(object).expect("policy");
    let spec = obj.spec.clone();
    engine.handle(FeedEvent::Change {
        change: Change::UpsertPolicy("db".into(), spec),
        generation: Some((Kind::SegmentationPolicy, "db".into(), 1)),
        policy: Some(Box::new(("db".into(), PolicyMeta::of(&obj)))),
    });
}

/// An engine over the fake API with db's gated policy, asking `collector`.
async fn gated(collector: Option<Collector>, created: &str) -> (Engine, Arc<Metrics>, FakeApi) {
    let (client, api) = FakeApi::start();
    let (engine, metrics) = engine(client);
    let promotions = Promotions::new(collector, Duration::from_secs(60));
    let mut engine = engine.with_promotions(promotions);
    feed_cluster(&mut engine, &api);
    apply_policy(&mut engine, &api, created);
    engine.check_due = false; // the test checks at its own clock
    assert!(matches!(engine.step(true).await, Ok(true)));
    api.take_calls();
    (engine, metrics, api)
}

fn db_mode(engine: &Engine) -> EnforcementMode {
    let compiler = engine.compiler.as_ref().expect("compiled");
    compiler.output().endpoints[&EndpointRef::Pod(PodKey::new("prod", "db"))].mode
}

async fn check_and_publish(engine: &mut Engine, now: &str) {
    engine.check_promotions(ts(now)).await;
    let dirty = engine.dirty;
    if dirty {
        engine.publish().await.expect("published");
        engine.dirty = false;
    } else {
        engine.write_policy_statuses(None).await;
    }
}

fn status(api: &FakeApi) -> bulkhead_api::SegmentationPolicyStatus {
    let obj = api.get(&format!("{POLICIES}/db")).expect("policy");
    let obj: SegmentationPolicy = serde_json::from_value(obj).expect("policy");
    obj.status.expect("a status")
}

fn promoted_condition(st: &bulkhead_api::SegmentationPolicyStatus) -> (String, String) {
    let c = st
        .conditions
        .iter()
        .find(|c| c.type_ == "Promoted")
        .expect("Promoted");
    (format!("{:?}", c.status), c.reason.clone())
}

#[tokio::test]
async fn traffic_keeps_the_gate_shut_and_quiet_opens_it_without_writing_spec() {
    let dir = tempfile::tempdir().expect("dir");
    let (lab, addr) = collector(&dir).await;
    let url = format!("http://{addr}");
    let (mut engine, metrics, api) = gated(
        Some(Collector::new(&url, Duration::from_secs(5))),
        "2026-01-01T12:00:00Z",
    )
    .await;
    // Old enough (50 s > 20 s), but web's connection to db 15 s ago would be denied.
    store(
        &lab,
        "b1",
        vec![to_db("2026-01-01T12:00:35Z", FlowVerdict::Allow)],
    )
    .await;
    check_and_publish(&mut engine, NOW).await;
    assert_eq!(db_mode(&engine), EnforcementMode::Visibility);
    let st = status(&api);
    let gate = st.promotion.clone().expect("gate status");
    assert_eq!(gate.state, PromotionState::Blocked, "{}", gate.message);
    let last = gate.last_would_deny.expect("the would-deny that holds it");
    assert_eq!(
        (last.from.as_str(), last.to.as_str(), last.port),
        ("prod/web", "prod/db", 5432)
    );
    assert_eq!(
        promoted_condition(&st),
        ("False".into(), "WouldDeny".into())
    );
    assert_eq!(st.effective_mode, Some(EnforcementMode::Visibility));
    // The minute bucket holding it ends 12:01:00; 20 s of quiet later it can open.
    assert_eq!(gate.opens_at.as_deref(), Some("2026-01-01T12:01:20Z"));
    api.take_calls();

    check_and_publish(&mut engine, "2026-01-01T12:01:25Z").await;
    assert_eq!(
        db_mode(&engine),
        EnforcementMode::Full,
        "the effective mode is compiled"
    );
    let st = status(&api);
    assert_eq!(st.effective_mode, Some(EnforcementMode::Full));
    assert_eq!(promoted_condition(&st), ("True".into(), "Promoted".into()));
    let gate = st.promotion.expect("gate status");
    assert_eq!(gate.promoted_at.as_deref(), Some("2026-01-01T12:01:25Z"));
    let calls = api.take_calls();
    let lines: Vec<String> = calls.iter().map(|c| c.line()).collect();
    assert!(
        lines.contains(&format!("PATCH {RULE_MAPS}/n1")),
        "{lines:?}"
    );
    assert!(
        lines.contains(&format!("PATCH {POLICIES}/db/status")),
        "{lines:?}"
    );
    assert!(
        !lines.contains(&format!("PATCH {POLICIES}/db")),
        "spec written: {lines:?}"
    );
    assert!(
        !calls.iter().any(|c| c.method == http::Method::PUT),
        "{lines:?}"
    );
    let event = calls
        .iter()
        .find(|c| c.path.ends_with("/events"))
        .expect("an Event");
    assert_eq!(event.body["reason"], "Promoted");
    assert_eq!(metrics.promotions.get(), 1);
    let map = api.get(&format!("{RULE_MAPS}/n1")).expect("rule map");
    let db = map["spec"]["endpoints"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["name"] == "prod/db"))
        .cloned();
    assert_eq!(db.expect("db in the map")["mode"], "full");

    // Later quiet checks find nothing new and write nothing.
    api.take_calls();
    check_and_publish(&mut engine, "2026-01-01T12:01:40Z").await;
    let lines: Vec<String> = api.take_calls().iter().map(|c| c.line()).collect();
    assert!(!lines.iter().any(|l| l.starts_with("PATCH")), "{lines:?}");
    assert!(lines.iter().all(|l| !l.contains("/events")), "{lines:?}");

    // GitOps re-applies the same spec: nothing changes, nothing is written.
    apply_policy(&mut engine, &api, "2026-01-01T12:00:00Z");
    assert_eq!(db_mode(&engine), EnforcementMode::Full);
    assert!(engine.step(true).await.is_ok());
    let lines: Vec<String> = api.take_calls().iter().map(|c| c.line()).collect();
    assert!(!lines.iter().any(|l| l.starts_with("PATCH")), "{lines:?}");
}

#[tokio::test]
async fn a_young_policy_observes_first() {
    let dir = tempfile::tempdir().expect("dir");
    let (_lab, addr) = collector(&dir).await;
    let url = format!("http://{addr}");
    let (mut engine, _, api) = gated(
        Some(Collector::new(&url, Duration::from_secs(5))),
        "2026-01-01T12:00:40Z",
    )
    .await;
    check_and_publish(&mut engine, NOW).await;
    let gate = status(&api).promotion.expect("gate");
    assert_eq!(gate.state, PromotionState::Observing, "{}", gate.message);
    assert_eq!(gate.opens_at.as_deref(), Some("2026-01-01T12:01:00Z"));
    assert_eq!(db_mode(&engine), EnforcementMode::Visibility);
}

#[tokio::test]
async fn a_collector_that_cannot_answer_holds_promotion_and_status_says_why() {
    // Nothing listens on a port just let go of; a listener that never
    // answers stands for a hung collector.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let closed_url = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hung_url = format!("http://{}", hung.local_addr().expect("addr"));
    let cases = [
        (
            Some(Collector::new(&closed_url, Duration::from_secs(5))),
            "reaching",
        ),
        (
            Some(Collector::new(&hung_url, Duration::from_millis(300))),
            "gave no answer within 300ms",
        ),
        (None, "no --collector-url"),
    ];
    for (collector, why) in cases {
        let (mut engine, metrics, api) = gated(collector, "2026-01-01T11:00:00Z").await;
        check_and_publish(&mut engine, NOW).await;
        let st = status(&api);
        let gate = st.promotion.clone().expect("gate");
        assert_eq!(
            gate.state,
            PromotionState::Unknown,
            "{why}: {}",
            gate.message
        );
        assert!(gate.message.contains(why), "{why}: {}", gate.message);
        assert!(
            gate.message.contains("nothing is promoted"),
            "{}",
            gate.message
        );
        assert_eq!(
            promoted_condition(&st),
            ("False".into(), "HistoryUnavailable".into())
        );
        assert_eq!(db_mode(&engine), EnforcementMode::Visibility, "{why}");
        assert_eq!(metrics.promotions.get(), 0);
    }
    drop(hung);
}

#[tokio::test]
async fn records_lost_in_the_window_or_an_answer_at_its_limit_hold_promotion() {
    let dir = tempfile::tempdir().expect("dir");
    let (lab, addr) = collector(&dir).await;
    let url = format!("http://{addr}");
    // An answer limited to one record, holding one would-deny out of scope
    // (web's own egress): more may exist, so nothing is promoted.
    let mut elsewhere = to_db("2026-01-01T12:00:35Z", FlowVerdict::Allow);
    elsewhere.direction = Direction::Egress;
    store(&lab, "b1", vec![elsewhere]).await;
    let limited = Collector::new(&url, Duration::from_secs(5)).with_limit(1);
    let (mut engine, _, api) = gated(Some(limited), "2026-01-01T11:00:00Z").await;
    check_and_publish(&mut engine, NOW).await;
    let gate = status(&api).promotion.expect("gate");
    assert_eq!(gate.state, PromotionState::Unknown, "{}", gate.message);
    assert!(
        gate.message.contains("stopped at its limit"),
        "{}",
        gate.message
    );
    assert_eq!(db_mode(&engine), EnforcementMode::Visibility);
    // The full answer finds nothing in scope: it opens.
    let (mut engine, _, api) = gated(
        Some(Collector::new(&url, Duration::from_secs(5))),
        "2026-01-01T11:00:00Z",
    )
    .await;
    check_and_publish(&mut engine, NOW).await;
    assert_eq!(
        status(&api).promotion.expect("gate").state,
        PromotionState::Promoted
    );

    // An agent reports records it lost in the window: would-denies may be missing.
    let loss = bulkhead_api::flow::LossReport {
        node: "n1".into(),
        start: ts("2026-01-01T12:00:30Z"),
        end: ts("2026-01-01T12:00:40Z"),
        ring_buffer_events: 0,
        export_records: 9,
    };
    let batch = FlowBatch {
        node: "n1".into(),
        batch_id: "loss".into(),
        records: vec![],
        losses: vec![loss],
    };
    lab.store.insert(&batch).await.expect("stored");
    let (mut engine, _, api) = gated(
        Some(Collector::new(&url, Duration::from_secs(5))),
        "2026-01-01T11:00:00Z",
    )
    .await;
    check_and_publish(&mut engine, NOW).await;
    let gate = status(&api).promotion.expect("gate");
    assert_eq!(gate.state, PromotionState::Unknown, "{}", gate.message);
    assert!(gate.message.contains("9 on n1"), "{}", gate.message);
    assert_eq!(db_mode(&engine), EnforcementMode::Visibility);
}

#[tokio::test]
async fn a_deny_after_promotion_raises_the_alert_and_does_not_demote() {
    let dir = tempfile::tempdir().expect("dir");
    let (lab, addr) = collector(&dir).await;
    let url = format!("http://{addr}");
    let (mut engine, metrics, api) = gated(
        Some(Collector::new(&url, Duration::from_secs(5))),
        "2026-01-01T11:00:00Z",
    )
    .await;
    check_and_publish(&mut engine, "2026-01-01T12:00:10Z").await;
    assert_eq!(db_mode(&engine), EnforcementMode::Full);
    store(
        &lab,
        "b2",
        vec![to_db("2026-01-01T12:00:40Z", FlowVerdict::Deny)],
    )
    .await;
    check_and_publish(&mut engine, NOW).await;
    assert_eq!(
        db_mode(&engine),
        EnforcementMode::Full,
        "never demoted on its own"
    );
    let label = PolicyLabel {
        policy: "db".into(),
    };
    assert_eq!(metrics.promoted_denied_flows.get_or_create(&label).get(), 2);
    let gate = status(&api).promotion.expect("gate");
    assert_eq!(gate.state, PromotionState::Promoted);
    assert!(
        gate.message.contains("2 flows in scope denied since"),
        "{}",
        gate.message
    );
    assert_eq!(
        gate.last_would_deny.map(|s| s.from),
        Some("prod/web".into())
    );

    // A person demotes by taking the promotion out of the spec.
    let mut spec: SegmentationPolicySpec = serde_json::from_value(gated_spec()).expect("spec");
    spec.promotion = None;
    engine.handle(FeedEvent::Change {
        change: Change::UpsertPolicy("db".into(), spec),
        generation: Some((Kind::SegmentationPolicy, "db".into(), 2)),
        policy: Some(Box::new(("db".into(), PolicyMeta::default()))),
    });
    assert_eq!(db_mode(&engine), EnforcementMode::Visibility);
}

#[tokio::test]
async fn a_promotion_recorded_in_status_survives_a_restart_before_any_check() {
    let (client, api) = FakeApi::start();
    let (mut engine, _) = engine(client);
    feed_cluster(&mut engine, &api);
    let object = json!({"apiVersion": "bulkhead.dev/v1alpha1", "kind": "SegmentationPolicy",
        "metadata": {"name": "db", "generation": 1, "creationTimestamp": "2026-01-01T11:00:00Z"},
        "spec": gated_spec(),
        "status": {"effectiveMode": "full", "promotion": {"state": "Promoted", "to": "full",
            "promotedAt": "2026-01-01T11:30:00Z", "message": "promoted"}}});
    let obj: SegmentationPolicy = serde_json::from_value(object).expect("policy");
    engine.handle(FeedEvent::Change {
        change: Change::UpsertPolicy("db".into(), obj.spec.clone()),
        generation: Some((Kind::SegmentationPolicy, "db".into(), 1)),
        policy: Some(Box::new(("db".into(), PolicyMeta::of(&obj)))),
    });
    engine.check_due = false;
    assert!(matches!(engine.step(true).await, Ok(true)));
    assert_eq!(db_mode(&engine), EnforcementMode::Full);
    // A stale event without the status does not undo it.
    let mut stale = obj.clone();
    stale.status = None;
    engine.handle(FeedEvent::Change {
        change: Change::UpsertPolicy("db".into(), stale.spec.clone()),
        generation: Some((Kind::SegmentationPolicy, "db".into(), 1)),
        policy: Some(Box::new(("db".into(), PolicyMeta::of(&stale)))),
    });
    assert_eq!(db_mode(&engine), EnforcementMode::Full);
}
