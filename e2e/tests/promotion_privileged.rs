//! Gated promotion end to end (root needed): real packets judged by the
//! agents, flow records in the real collector, the real operator asking it,
//! and the effective mode it compiles enforced on the next packets.
//!
//! ```text
//!  node-1: prod/web-1 (web)  prod/db-1 (db, answers TCP 8080)
//!  node-2: prod/cache-2 (cache)
//!  policy db: visibility; allows web → db:8080;
//!             promotion {to: full, after: {observedFor: 5s, quietFor: 20s}}
//! ```
//!
//! 1. cache → db is would-be denied: the gate stays shut and says why;
//! 2. the collector goes away: the gate holds past the time it would open;
//! 3. the collector is back and the scope is quiet: the effective mode
//!    flips to full, an Event says so, and cache → db is dropped while
//!    web → db still passes;
//! 4. GitOps re-applies the same spec: nothing changes.

mod support;

use std::time::{Duration, Instant};

use bulkhead_api::policy::EnforcementMode;
use bulkhead_api::promotion::{PromotionState, PromotionStatus};
use bulkhead_api::SegmentationPolicy;
use bulkhead_e2e::lab::{wait_until, Agents, Probe};
use bulkhead_e2e::{kubelet, observe, Lab, LabSpec, Workload};
use support::*;

const MAPPING: &str = include_str!("../fixtures/workloads-mapping.yaml");

const POLICY: &str = r#"
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: db}
spec:
  scope: {selector: {matchLabels: {app: db, env: prod}}}
  enforcement: visibility
  promotion: {to: full, after: {observedFor: 5s, quietFor: 20s}}
  ingress:
  - name: from-web
    action: allow
    peers: [{selector: {matchLabels: {app: web}}}]
    ports: [{protocol: TCP, port: 8080}]
"#;

/// How long a flow takes to reach the collector and a gate check to see it:
/// the agents report every second, the operator checks every second.
const SEEN: Duration = Duration::from_secs(60);
/// A would-deny sits in a minute bucket, and the gate opens a quiet period
/// after the bucket ends: at most 80 s after the last would-deny.
const OPENS: Duration = Duration::from_secs(150);

fn start_lab() -> Lab {
    let mut spec = LabSpec::new(2);
    spec.agents = Agents::Cluster;
    spec.operator_args = vec!["--promotion-interval=1s".into()];
    spec.namespaces = vec![("prod".into(), kubelet::labels([("env", "prod")]))];
    spec.workloads = vec![
        Workload::new("prod", "web-1", "node-1", &[("app", "web")]),
        Workload::new("prod", "db-1", "node-1", &[("app", "db")]),
        Workload::new("prod", "cache-2", "node-2", &[("app", "cache")]),
    ];
    let mut lab = start(spec);
    ok(
        lab.listen("prod", "db-1", &[8080], &[]),
        "starting a listener",
    );
    assert!(lab.collector().is_some(), "the lab runs a collector");
    lab
}

fn policy(lab: &Lab) -> SegmentationPolicy {
    let json = ok(
        lab.kubectl()
            .run(&["get", "segmentationpolicy", "db", "-o", "json"]),
        "reading the policy",
    );
    serde_json::from_str(&json).expect("a SegmentationPolicy")
}

fn gate(p: &SegmentationPolicy) -> Option<PromotionStatus> {
    p.status.as_ref().and_then(|s| s.promotion.clone())
}

fn effective(p: &SegmentationPolicy) -> Option<EnforcementMode> {
    p.status.as_ref().and_then(|s| s.effective_mode)
}

/// db's mode in the rule map node-1's agent programs, and that map's
/// generation (which moves with its spec, not with the agent's status).
fn db_in_rule_map(lab: &Lab) -> (EnforcementMode, i64) {
    let maps = ok(observe::rule_maps(&lab.kubectl()), "reading rule maps");
    let map = &maps["node-1"];
    let db = map.spec.endpoints.iter().find(|e| e.name == "prod/db-1");
    let mode = db.expect("db-1 in node-1's map").mode;
    (mode, map.metadata.generation.unwrap_or_default())
}

/// Whether web → db is answered.
fn web_to_db(lab: &Lab) -> bool {
    let r = ok(
        lab.probe_all(&[Probe::tcp("prod/web-1", "prod/db-1", 8080)]),
        "probing",
    );
    r[0].answered
}

/// (cache → db answered, web → db answered)
fn probe(lab: &Lab) -> (bool, bool) {
    let r = ok(
        lab.probe_all(&[
            Probe::tcp("prod/cache-2", "prod/db-1", 8080),
            Probe::tcp("prod/web-1", "prod/db-1", 8080),
        ]),
        "probing",
    );
    (r[0].answered, r[1].answered)
}

fn wait<T>(
    what: &str,
    timeout: Duration,
    check: impl FnMut() -> bulkhead_e2e::Result<Option<T>>,
) -> T {
    ok(wait_until(what, timeout, check), "waiting")
}

fn operator_metric(lab: &mut Lab, name: &str) -> f64 {
    let op = ok(lab.operator("a"), "the operator");
    ok(op.metric(name), "reading operator metrics").unwrap_or(0.0)
}

#[test]
fn promotion_privileged_opens_on_quiet_holds_on_outage_and_ignores_gitops_reapply() {
    let mut lab = start_lab();
    let k = lab.kubectl();
    ok(k.run_with_stdin(&["apply", "-f", "-"], MAPPING), "mapping");
    ok(k.run_with_stdin(&["apply", "-f", "-"], POLICY), "policy");
    eventually("the policy to be programmed", || {
        lab.sync_agents(Duration::from_secs(30))?;
        Ok(policy(&lab).status.filter(|s| s.nodes_programmed == 1))
    });

    // 1. Traffic keeps the gate shut: cache → db is would-be denied.
    let blocked = wait("the gate to be blocked by cache → db", SEEN, || {
        let (cache, web) = probe(&lab);
        assert!(
            cache && web,
            "visibility drops nothing (cache {cache}, web {web})"
        );
        Ok(gate(&policy(&lab)).filter(|g| g.state == PromotionState::Blocked))
    });
    let last = blocked
        .last_would_deny
        .clone()
        .expect("the would-deny holding it");
    assert_eq!(
        (last.from.as_str(), last.to.as_str(), last.port),
        ("prod/cache-2", "prod/db-1", 8080),
        "{blocked:?}"
    );
    // Keep the traffic up well past observedFor: it stays shut.
    let until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < until {
        let (cache, _) = probe(&lab);
        assert!(cache);
        let p = policy(&lab);
        let g = gate(&p).expect("gate status");
        assert_eq!(g.state, PromotionState::Blocked, "{g:?}");
        assert_eq!(effective(&p), Some(EnforcementMode::Visibility));
        std::thread::sleep(Duration::from_millis(500));
    }
    let p = policy(&lab);
    let shut = gate(&p).expect("gate status");
    let promoted = p
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Promoted").cloned());
    let promoted = promoted.expect("a Promoted condition");
    assert_eq!(
        (format!("{:?}", promoted.status), promoted.reason.as_str()),
        ("False".into(), "WouldDeny")
    );
    let opens_at: jiff::Timestamp = shut
        .opens_at
        .as_deref()
        .expect("opensAt")
        .parse()
        .expect("RFC 3339");
    assert_eq!(db_in_rule_map(&lab).0, EnforcementMode::Visibility);

    // 2. A collector outage holds promotion, past the time the gate would open.
    ok(
        lab.collector_mut().expect("collector").kill(),
        "stopping the collector",
    );
    wait("the gate to say the collector cannot answer", SEEN, || {
        Ok(gate(&policy(&lab)).filter(|g| g.state == PromotionState::Unknown))
    });
    let past_opening = wait("the gate's opening time to pass", OPENS, || {
        let p = policy(&lab);
        let g = gate(&p).expect("gate status");
        assert_eq!(
            g.state,
            PromotionState::Unknown,
            "promoted while the collector was down: {g:?}"
        );
        assert!(
            g.message.contains("collector cannot answer"),
            "{}",
            g.message
        );
        assert_eq!(effective(&p), Some(EnforcementMode::Visibility));
        let now = jiff::Timestamp::now();
        Ok((now > opens_at + jiff::SignedDuration::from_secs(5)).then_some(now))
    });
    assert_eq!(
        db_in_rule_map(&lab).0,
        EnforcementMode::Visibility,
        "at {past_opening}"
    );

    // 3. The collector is back and the scope quiet: the gate opens.
    ok(lab.start_collector(), "starting the collector again");
    let p = wait("the promotion", OPENS, || {
        // Allowed traffic never holds the gate shut.
        assert!(web_to_db(&lab));
        let p = policy(&lab);
        Ok((effective(&p) == Some(EnforcementMode::Full)).then_some(p))
    });
    let g = gate(&p).expect("gate status");
    assert_eq!(g.state, PromotionState::Promoted, "{g:?}");
    assert!(g.promoted_at.is_some());
    assert_eq!(
        p.spec.enforcement,
        Some(EnforcementMode::Visibility),
        "spec untouched"
    );
    let events = ok(
        k.run(&[
            "get",
            "events",
            "-A",
            "--field-selector",
            "reason=Promoted",
            "-o",
            "json",
        ]),
        "listing events",
    );
    let events: serde_json::Value = serde_json::from_str(&events).expect("JSON");
    let about_db = events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["involvedObject"]["name"] == "db" || e["regarding"]["name"] == "db")
        .count();
    assert_eq!(about_db, 1, "{events}");
    eventually("db to be enforced in full mode", || {
        lab.sync_agents(Duration::from_secs(30))?;
        Ok((db_in_rule_map(&lab).0 == EnforcementMode::Full).then_some(()))
    });
    assert_eq!(
        probe(&lab),
        (false, true),
        "full mode: cache → db dropped, web → db allowed"
    );

    // 4. GitOps re-applies the same spec (another field manager, server-side).
    let generation = p.metadata.generation;
    let (_, map_generation) = db_in_rule_map(&lab);
    let checks = "bulkhead_operator_promotion_checks_total{state=\"promoted\"}";
    let before = operator_metric(&mut lab, checks);
    ok(
        k.run_with_stdin(
            &[
                "apply",
                "--server-side",
                "--field-manager=gitops",
                "-f",
                "-",
            ],
            POLICY,
        ),
        "re-applying the policy",
    );
    wait("three more gate checks", SEEN, || {
        Ok((operator_metric(&mut lab, checks) >= before + 3.0).then_some(()))
    });
    let again = policy(&lab);
    assert_eq!(
        again.metadata.generation, generation,
        "the spec did not change"
    );
    assert_eq!(again.spec.enforcement, Some(EnforcementMode::Visibility));
    assert_eq!(effective(&again), Some(EnforcementMode::Full));
    assert_eq!(
        db_in_rule_map(&lab),
        (EnforcementMode::Full, map_generation),
        "the rule map was rewritten"
    );
    let managers: Vec<(String, String)> = again
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|m| {
            (
                m.manager.clone().unwrap_or_default(),
                m.subresource.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        managers
            .iter()
            .all(|(m, sub)| m != "bulkhead-operator" || sub == "status"),
        "the operator wrote more than status: {managers:?}"
    );
    assert_eq!(probe(&lab), (false, true));
}
