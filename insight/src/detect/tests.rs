//! Each detection on a crafted history: it fires at its threshold, not one
//! below, once per id, and with the same id however the records are batched.

use bulkhead_api::flow::{FlowRecord, FlowVerdict};
use bulkhead_api::identity::UNLABELED;
use bulkhead_api::policy::{EnforcementMode, Protocol};
use bulkhead_api::rule_map::Direction;
use jiff::SignedDuration;

use super::*;
use crate::testing::{day, pod, record, world};

fn denied(mut r: FlowRecord) -> FlowRecord {
    r.verdict = FlowVerdict::Deny;
    r.would_verdict = FlowVerdict::Deny;
    r.mode = EnforcementMode::Full;
    r
}

fn at_secs(s: i64) -> Timestamp {
    day(0) + SignedDuration::from_secs(s)
}

fn scanner() -> bulkhead_api::flow::FlowEndpoint {
    let mut p = pod("dev", "probe", &[("app", "probe")], "10.0.9.9");
    p.identity = 300;
    p
}

fn target_n(n: u8) -> bulkhead_api::flow::FlowEndpoint {
    let mut p = pod(
        "prod",
        &format!("db-{n}"),
        &[("app", "db")],
        &format!("10.0.1.{n}"),
    );
    p.identity = 301;
    p
}

fn detector() -> Detector {
    let config = DetectConfig {
        scan: ScanConfig {
            hosts: 5,
            ports: 4,
            ..ScanConfig::default()
        },
        sensitive: SensitiveConfig {
            labels: vec![("data".into(), "pci".into())],
        },
        ..DetectConfig::default()
    };
    Detector::new(config).expect("config")
}

fn host_sweep(hosts: u8, from_sec: i64) -> Vec<FlowRecord> {
    (1..=hosts)
        .map(|n| {
            denied(record(
                &scanner(),
                &target_n(n),
                Protocol::Tcp,
                5432,
                at_secs(from_sec + i64::from(n)),
                1,
            ))
        })
        .collect()
}

#[test]
fn a_host_scan_fires_at_the_threshold_once_with_an_id_independent_of_batching() {
    let mut d = detector();
    assert!(d.observe(&host_sweep(4, 0)).is_empty(), "4 hosts < 5");
    let mut d = detector();
    let all = d.observe(&host_sweep(6, 0));
    assert_eq!(all.len(), 1, "{all:#?}");
    let a = &all[0];
    assert_eq!(a.detector, DetectorKind::Scan);
    assert_eq!(a.destinations, 5, "fires when the fifth host is denied");
    assert_eq!(a.source.address.to_string(), "10.0.9.9");
    assert!(a.destination.is_none());
    // Split across three batches, with the sixth host after the fact.
    let sweep = host_sweep(6, 0);
    let mut d2 = detector();
    let mut split = Vec::new();
    for chunk in sweep.chunks(2) {
        split.extend(d2.observe(chunk));
    }
    assert_eq!(split.len(), 1);
    assert_eq!(split[0].id, a.id, "same facts, same id");
    // A retried batch raises nothing new.
    assert!(d2.observe(&sweep).is_empty());
}

#[test]
fn allowed_flows_are_not_a_scan_and_windows_separate_sweeps() {
    let mut d = detector();
    let allowed: Vec<FlowRecord> = (1..=10)
        .map(|n| record(&scanner(), &target_n(n), Protocol::Tcp, 5432, at_secs(0), 1))
        .collect();
    assert!(d.observe(&allowed).is_empty());
    // 3 hosts at the end of one 5-minute window, 3 at the start of the next.
    let mut late = host_sweep(3, 290);
    late.extend(host_sweep(6, 300).into_iter().skip(3));
    assert!(d.observe(&late).is_empty(), "neither window has 5 hosts");
    // Two full sweeps in two windows: two alerts, two ids.
    let mut a = d.observe(&host_sweep(5, 600));
    a.extend(d.observe(&host_sweep(5, 900)));
    assert_eq!(a.len(), 2);
    assert_ne!(a[0].id, a[1].id);
}

#[test]
fn a_port_scan_names_its_destination() {
    let mut d = detector();
    let ports: Vec<FlowRecord> = [21u16, 23, 25, 80]
        .iter()
        .map(|p| {
            denied(record(
                &scanner(),
                &target_n(1),
                Protocol::Tcp,
                *p,
                at_secs(5),
                1,
            ))
        })
        .collect();
    assert!(d.observe(&ports[..3]).is_empty(), "3 ports < 4");
    let a = d.observe(&ports[3..]);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].ports, vec![21, 23, 25, 80]);
    let dst = a[0]
        .destination
        .as_ref()
        .expect("a port scan has one target");
    assert_eq!(dst.name.as_deref(), Some("prod/db-1"));
}

fn vault() -> bulkhead_api::flow::FlowEndpoint {
    let mut p = pod(
        "prod",
        "vault-0",
        &[("app", "vault"), ("data", "pci")],
        "10.0.2.1",
    );
    p.identity = 400;
    p
}

#[test]
fn the_first_flow_into_a_sensitive_workload_fires_once_and_history_seeds_it() {
    let mut web = pod("prod", "web-1", &[("app", "web")], "10.0.3.1");
    web.identity = 302;
    let old = record(&web, &vault(), Protocol::Tcp, 8200, day(0), 3);
    let mut d = detector();
    d.seed([&old]);
    let again = record(&web, &vault(), Protocol::Tcp, 8200, day(1), 1);
    assert!(d.observe([&again]).is_empty(), "seen in history");
    // Another pod of the same app is the same source.
    let mut web2 = web.clone();
    web2.address = "10.0.3.2".parse().expect("ip");
    web2.name = Some("prod/web-2".into());
    assert!(d
        .observe([&record(&web2, &vault(), Protocol::Tcp, 8200, day(1), 1)])
        .is_empty());
    // A new app, then a new port: each a first.
    let first = record(&scanner(), &vault(), Protocol::Tcp, 8200, day(2), 1);
    let a = d.observe([&first, &first]);
    assert_eq!(a.len(), 1, "{a:#?}");
    assert_eq!(a[0].detector, DetectorKind::FirstSensitiveFlow);
    assert_eq!(a[0].severity, Severity::Medium);
    assert!(a[0].summary.contains("data=pci"), "{}", a[0].summary);
    let port = record(&web, &vault(), Protocol::Tcp, 8201, day(2), 1);
    assert_eq!(d.observe([&port]).len(), 1);
    // A workload without the label never fires.
    assert!(d
        .observe([&record(
            &scanner(),
            &target_n(1),
            Protocol::Tcp,
            1,
            day(3),
            1
        )])
        .is_empty());
}

fn ingress_full(src: &bulkhead_api::flow::FlowEndpoint, verdict: FlowVerdict) -> FlowRecord {
    let mut r = record(src, &target_n(1), Protocol::Tcp, 5432, at_secs(10), 1);
    r.direction = Direction::Ingress;
    r.mode = EnforcementMode::Full;
    r.verdict = verdict;
    r.would_verdict = verdict;
    r
}

#[test]
fn world_and_unlabeled_into_full_mode_fire_and_other_modes_do_not() {
    let mut d = detector();
    let mut visibility = ingress_full(&world("203.0.113.7"), FlowVerdict::Allow);
    visibility.mode = EnforcementMode::Visibility;
    let mut egress = ingress_full(&world("203.0.113.7"), FlowVerdict::Allow);
    egress.direction = Direction::Egress;
    assert!(d.observe([&visibility, &egress]).is_empty());
    let labeled = ingress_full(&scanner(), FlowVerdict::Allow);
    assert!(
        d.observe([&labeled]).is_empty(),
        "a labeled source is trusted"
    );
    let got_in = ingress_full(&world("203.0.113.7"), FlowVerdict::Allow);
    let a = d.observe([&got_in, &got_in]);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].detector, DetectorKind::UntrustedIntoFull);
    assert_eq!(a[0].severity, Severity::High);
    let mut unlabeled = pod("dev", "x", &[], "10.0.8.8");
    unlabeled.identity = UNLABELED;
    let refused = ingress_full(&unlabeled, FlowVerdict::Deny);
    let a = d.observe([&refused]);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].severity, Severity::Low);
    assert!(a[0].summary.starts_with("unlabeled"), "{}", a[0].summary);
}

#[test]
fn untrusted_min_flows_is_a_threshold() {
    let config = DetectConfig {
        untrusted: UntrustedConfig {
            min_flows: 3,
            ..UntrustedConfig::default()
        },
        ..DetectConfig::default()
    };
    let mut d = Detector::new(config).expect("config");
    let r = ingress_full(&world("203.0.113.7"), FlowVerdict::Deny);
    assert!(d.observe([&r, &r]).is_empty(), "2 < 3");
    assert_eq!(d.observe([&r]).len(), 1);
}

#[test]
fn lateral_movement_on_risky_ports_between_different_apps() {
    let mut d = detector();
    let mut web = pod("prod", "web-1", &[("app", "web")], "10.0.3.1");
    web.identity = 302;
    let mut web_peer = web.clone();
    web_peer.address = "10.0.3.2".parse().expect("ip");
    let same_app = record(&web, &web_peer, Protocol::Tcp, 22, at_secs(0), 1);
    let https = record(&web, &target_n(1), Protocol::Tcp, 443, at_secs(0), 1);
    let udp = record(&web, &target_n(1), Protocol::Udp, 445, at_secs(0), 1);
    let mut ingress_view = record(&web, &target_n(1), Protocol::Tcp, 22, at_secs(0), 1);
    ingress_view.direction = Direction::Ingress;
    assert!(d
        .observe([&same_app, &https, &udp, &ingress_view])
        .is_empty());
    for port in RISKY_PORTS {
        let r = record(&web, &target_n(1), Protocol::Tcp, port, at_secs(0), 1);
        let a = d.observe([&r, &r]);
        assert_eq!(a.len(), 1, "port {port}");
        assert_eq!(a[0].detector, DetectorKind::LateralMovement);
        assert_eq!(a[0].severity, Severity::High, "allowed");
        assert!(a[0].summary.contains("app=web"), "{}", a[0].summary);
    }
}

#[test]
fn ids_are_stable_and_late_records_do_not_refire() {
    let mut d = detector();
    let a = d.observe(&host_sweep(5, 0));
    assert_eq!(a.len(), 1);
    // Move time far ahead, then replay the old sweep: its window is gone
    // and its records are past the horizon.
    assert!(d.observe(&host_sweep(1, 86_400)).is_empty());
    assert!(d.observe(&host_sweep(5, 0)).is_empty());
    // A fresh detector (a restarted collector) gives the same id.
    let b = detector().observe(&host_sweep(5, 0));
    assert_eq!(a[0].id, b[0].id);
    assert!(a[0].id.starts_with("bh-scan-"), "{}", a[0].id);
}

#[test]
fn bad_thresholds_are_refused() {
    let mut c = DetectConfig::default();
    c.scan.hosts = 0;
    let e = Detector::new(c).expect_err("0 hosts");
    assert!(e.to_string().contains("scan hosts"), "{e}");
    let mut c = DetectConfig::default();
    c.lateral.window = SignedDuration::ZERO;
    assert!(Detector::new(c).is_err());
}
