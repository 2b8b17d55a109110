//! The one store test suite every backend passes. Each case opens a fresh
//! store through [`Backend`]; `run_all` runs them in order.

use std::collections::BTreeMap;
use std::future::Future;

use bulkhead_api::flow::{FlowRecord, FlowVerdict};
use bulkhead_api::policy::Protocol;
use bulkhead_api::rule_map::Direction;
use bulkhead_collector::edge::EdgeColumns;
use bulkhead_collector::store::{Clock, NodeLoss, Store, StoreConfig};
use bulkhead_collector::tier::{Retention, Tier};
use bulkhead_collector::StoreError;
use bulkhead_insight::{aggregate, EndpointMatch, FlowFilter, GroupBy, VerdictFilter};
use jiff::{SignedDuration, Timestamp};

use super::fixtures::*;

/// How a suite opens a backend.
pub trait Backend {
    type S: Store;
    /// Moves to a new, empty place (a new file, a new database).
    fn fresh(&mut self);
    /// Opens the current place; called again, it reopens the same data.
    fn open(&self, config: StoreConfig) -> impl Future<Output = Self::S>;
}

fn key(r: &FlowRecord) -> String {
    EdgeColumns::of(r).expect("edge").key
}

/// What a store holding `records` returns when one tier (width) serves
/// them all.
fn bucketed(records: &[FlowRecord], width: i64) -> Vec<FlowRecord> {
    let mut acc: BTreeMap<(i64, String), FlowRecord> = BTreeMap::new();
    for r in records {
        let b = r.start.as_second().div_euclid(width) * width;
        let e = acc.entry((b, key(r))).or_insert_with(|| {
            let mut z = r.clone();
            z.start = Timestamp::from_second(b).expect("ts");
            z.end = Timestamp::from_second(b + width).expect("ts");
            z.flows = 0;
            z.packets = 0;
            z.bytes = 0;
            z
        });
        e.flows += r.flows;
        e.packets += r.packets;
        e.bytes += r.bytes;
    }
    acc.into_values().collect()
}

const NOW: &str = "2026-06-15T12:00:00Z";

fn config(now: Timestamp) -> StoreConfig {
    let (clock, _) = Clock::manual(now);
    StoreConfig {
        retention: Retention::default(),
        clock,
    }
}

fn ep(s: &str) -> Option<EndpointMatch> {
    Some(EndpointMatch::parse(s).expect(s))
}

pub async fn ingest_filters_groups<B: Backend>(b: &mut B) {
    b.fresh();
    let now = ts(NOW);
    let store = b.open(config(now)).await;
    let (n1, n2) = mixed(now - SignedDuration::from_hours(2));
    let r1 = store
        .insert(&batch("n1", "b-1", n1.clone()))
        .await
        .expect("insert n1");
    assert_eq!((r1.records, r1.duplicate), (4, false));
    store
        .insert(&batch("n2", "b-1", n2.clone()))
        .await
        .expect("insert n2");
    let all: Vec<FlowRecord> = n1.iter().chain(&n2).cloned().collect();
    let expected = bucketed(&all, 60);

    let got = store
        .records(&FlowFilter::default(), 1000)
        .await
        .expect("records");
    assert_eq!(got, expected, "every record, in its minute bucket");
    assert_eq!(
        store
            .records(&FlowFilter::default(), 2)
            .await
            .expect("limit")
            .len(),
        2
    );

    let t = now - SignedDuration::from_hours(2);
    let filters: Vec<(&str, FlowFilter)> = vec![
        (
            "from app=web",
            FlowFilter {
                from: ep("app=web"),
                ..Default::default()
            },
        ),
        (
            "from app=web,env=prod",
            FlowFilter {
                from: ep("app=web,env=prod"),
                ..Default::default()
            },
        ),
        (
            "from app!=web",
            FlowFilter {
                from: ep("app!=web"),
                ..Default::default()
            },
        ),
        (
            "to app",
            FlowFilter {
                to: ep("app"),
                ..Default::default()
            },
        ),
        (
            "to bulkhead.dev/tier=data",
            FlowFilter {
                to: ep("bulkhead.dev/tier=data"),
                ..Default::default()
            },
        ),
        (
            "to shop/db-0",
            FlowFilter {
                to: ep("shop/db-0"),
                ..Default::default()
            },
        ),
        (
            "from node:n1",
            FlowFilter {
                from: ep("node:n1"),
                ..Default::default()
            },
        ),
        (
            "from 203.0.113.0/24",
            FlowFilter {
                from: ep("203.0.113.0/24"),
                ..Default::default()
            },
        ),
        (
            "to 10.0.2.20",
            FlowFilter {
                to: ep("10.0.2.20"),
                ..Default::default()
            },
        ),
        (
            "from fd00::/8",
            FlowFilter {
                from: ep("fd00::/8"),
                ..Default::default()
            },
        ),
        (
            "from ::/0 (no IPv4 in it)",
            FlowFilter {
                from: ep("::/0"),
                ..Default::default()
            },
        ),
        (
            "from 0.0.0.0/0",
            FlowFilter {
                from: ep("0.0.0.0/0"),
                ..Default::default()
            },
        ),
        (
            "deny",
            FlowFilter {
                verdict: Some(VerdictFilter::Deny),
                ..Default::default()
            },
        ),
        (
            "would-deny",
            FlowFilter {
                verdict: Some(VerdictFilter::WouldDeny),
                ..Default::default()
            },
        ),
        (
            "allow",
            FlowFilter {
                verdict: Some(VerdictFilter::Allow),
                ..Default::default()
            },
        ),
        (
            "port 5432",
            FlowFilter {
                port: Some(5432),
                ..Default::default()
            },
        ),
        (
            "udp",
            FlowFilter {
                protocol: Some(Protocol::Udp),
                ..Default::default()
            },
        ),
        (
            "node n2",
            FlowFilter {
                node: Some("n2".into()),
                ..Default::default()
            },
        ),
        (
            "since t+1m",
            FlowFilter {
                since: Some(t + SignedDuration::from_mins(1)),
                ..Default::default()
            },
        ),
        (
            "until t+1m",
            FlowFilter {
                until: Some(t + SignedDuration::from_mins(1)),
                ..Default::default()
            },
        ),
        (
            "from web to db, allowed on 5432 TCP, seen on n1",
            FlowFilter {
                from: ep("app=web"),
                to: ep("app=db"),
                verdict: Some(VerdictFilter::Allow),
                port: Some(5432),
                protocol: Some(Protocol::Tcp),
                node: Some("n1".into()),
                ..Default::default()
            },
        ),
    ];
    for (name, f) in &filters {
        let want: Vec<FlowRecord> = expected.iter().filter(|r| f.matches(r)).cloned().collect();
        let got = store.records(f, 1000).await.expect(name);
        assert_eq!(got, want, "records {name}");
    }
    assert_eq!(
        store.records(&filters[10].1, 1000).await.expect("v6").len(),
        1,
        "::/0 holds the IPv6 pod only"
    );

    let bys = [
        "source.app,destination.app",
        "source.app,destination.app,port",
        "verdict",
        "source.namespace,destination.name",
        "source.name",
        "node,protocol,direction",
        "destination.bulkhead.dev/tier",
        "destination.env,verdict",
    ];
    for by in bys {
        let g = GroupBy::parse(by).expect(by);
        for (name, f) in [
            ("all", FlowFilter::default()),
            ("to app=db", filters[5].1.clone()),
            ("port", filters[15].1.clone()),
        ] {
            let want = aggregate(expected.iter().filter(|r| f.matches(r)), &g);
            let got = store.aggregate(&f, &g).await.expect(by);
            assert_eq!(got, want, "aggregate {by} over {name}");
        }
    }
    let g = store
        .aggregate(
            &FlowFilter {
                from: ep("app=web"),
                to: ep("app=db"),
                ..Default::default()
            },
            &GroupBy::parse("source.app,destination.app").expect("by"),
        )
        .await
        .expect("web db");
    assert_eq!(g.len(), 1);
    assert_eq!(
        (g[0].flows, g[0].packets, g[0].bytes, g[0].peers),
        (1, 10, 1000, 1),
        "two-sided flow counted once, from the source's view"
    );
    assert_eq!(
        store
            .records(
                &FlowFilter {
                    to: ep("app=db"),
                    port: Some(5432),
                    from: ep("app=web"),
                    ..Default::default()
                },
                10
            )
            .await
            .expect("both views")
            .len(),
        2,
        "both views are kept"
    );
}

pub async fn idempotent_retry<B: Backend>(b: &mut B) {
    b.fresh();
    let now = ts(NOW);
    let store = b.open(config(now)).await;
    let (n1, n2) = mixed(now - SignedDuration::from_mins(30));
    let by = GroupBy::parse("node").expect("by");
    let first = store
        .insert(&batch("n1", "retry-me", n1.clone()))
        .await
        .expect("first");
    assert!(!first.duplicate);
    let before = store
        .aggregate(&FlowFilter::default(), &by)
        .await
        .expect("agg");
    let again = store
        .insert(&batch("n1", "retry-me", n1.clone()))
        .await
        .expect("retry");
    assert!(again.duplicate, "the retried batch is recognised");
    assert_eq!(again.records, 0);
    assert_eq!(
        store
            .aggregate(&FlowFilter::default(), &by)
            .await
            .expect("agg"),
        before,
        "nothing counted twice"
    );
    assert_eq!(
        store
            .records(&FlowFilter::default(), 100)
            .await
            .expect("records"),
        bucketed(&n1, 60)
    );
    let other = store
        .insert(&batch("n2", "retry-me", n2.clone()))
        .await
        .expect("other node");
    assert!(!other.duplicate, "batch ids are per node");
}

pub async fn tier_boundaries<B: Backend>(b: &mut B) {
    b.fresh();
    // Not on an hour: the minute tier starts at the next hour boundary.
    let now = ts("2026-06-15T12:34:56Z");
    let store = b.open(config(now)).await;
    let at = |s: &str| rec("n1", ts(s), web(), db(), 5432, Direction::Egress);
    let records = vec![
        at("2026-06-15T11:05:10Z"), // minute tier
        at("2026-05-20T08:10:00Z"), // hour tier, same hour as the next
        at("2026-05-20T08:40:00Z"),
        at("2025-12-01T03:00:00Z"), // day tier, same day as the next
        at("2025-12-01T22:00:00Z"),
        at("2026-06-01T12:59:00Z"), // the last hour before the minute tier starts (13:00)
        at("2026-06-01T13:00:00Z"), // the first minute of the minute tier
        at("2026-03-17T23:00:00Z"), // the last day before the hour tier starts (03-18)
        at("2026-03-18T00:30:00Z"), // the first hour of the hour tier
        at("2025-01-01T00:00:00Z"), // past every tier's retention: never read
    ];
    store
        .insert(&batch("n1", "tiers", records.clone()))
        .await
        .expect("insert");
    let one = |r: &FlowRecord, start: &str, end: &str, n: u64| {
        let mut x = r.clone();
        x.start = ts(start);
        x.end = ts(end);
        x.flows = n;
        x.packets = 10 * n;
        x.bytes = 1000 * n;
        x
    };
    let r = &records[0];
    let want = vec![
        one(r, "2025-12-01T00:00:00Z", "2025-12-02T00:00:00Z", 2),
        one(r, "2026-03-17T00:00:00Z", "2026-03-18T00:00:00Z", 1),
        one(r, "2026-03-18T00:00:00Z", "2026-03-18T01:00:00Z", 1),
        one(r, "2026-05-20T08:00:00Z", "2026-05-20T09:00:00Z", 2),
        one(r, "2026-06-01T12:00:00Z", "2026-06-01T13:00:00Z", 1),
        one(r, "2026-06-01T13:00:00Z", "2026-06-01T13:01:00Z", 1),
        one(r, "2026-06-15T11:05:00Z", "2026-06-15T11:06:00Z", 1),
    ];
    assert_eq!(
        store
            .records(&FlowFilter::default(), 100)
            .await
            .expect("records"),
        want,
        "each stretch from the finest tier holding it"
    );
    let by = GroupBy::parse("port").expect("by");
    let total = store
        .aggregate(&FlowFilter::default(), &by)
        .await
        .expect("agg");
    assert_eq!(total[0].flows, 9, "every record within retention, once");
    let f = FlowFilter {
        since: Some(ts("2026-05-01T00:00:00Z")),
        until: Some(ts("2026-06-02T00:00:00Z")),
        ..Default::default()
    };
    let want_range: Vec<FlowRecord> = want.iter().filter(|r| f.matches(r)).cloned().collect();
    assert_eq!(want_range.len(), 3);
    assert_eq!(store.records(&f, 100).await.expect("range"), want_range);
    assert_eq!(store.aggregate(&f, &by).await.expect("agg")[0].flows, 4);
    let old = FlowFilter {
        until: Some(ts("2025-05-01T00:00:00Z")),
        ..Default::default()
    };
    assert!(
        store.records(&old, 100).await.expect("old").is_empty(),
        "past retention is never read"
    );
    // Aggregates read whole coarser buckets where they fit (months for
    // long windows): the sums are those of the records the finer tiers give.
    let ranges = [
        (None, None),
        (Some("2025-11-15T00:00:00Z"), Some("2026-06-10T00:00:00Z")),
        (Some("2026-03-01T00:00:00Z"), Some("2026-06-01T12:30:00Z")),
        (Some("2026-06-01T12:59:30Z"), None),
        (Some("2025-06-01T00:00:00Z"), Some("2026-05-01T00:00:00Z")),
    ];
    for (since, until) in ranges {
        let f = FlowFilter {
            since: since.map(ts),
            until: until.map(ts),
            ..Default::default()
        };
        let fine = store.records(&f, 100).await.expect("records");
        assert_eq!(
            store.aggregate(&f, &by).await.expect("agg"),
            aggregate(&fine, &by),
            "{since:?}..{until:?}"
        );
    }
}

pub async fn retention_drops_partitions<B: Backend>(b: &mut B) {
    b.fresh();
    let now = ts(NOW);
    let store = b.open(config(now)).await;
    let at = |s: &str| rec("n1", ts(s), web(), db(), 5432, Direction::Egress);
    let mut bt = batch(
        "n1",
        "old",
        vec![
            at("2025-01-10T10:00:00Z"),
            at("2026-05-26T10:00:00Z"),
            at("2026-06-14T10:00:00Z"),
        ],
    );
    bt.losses = vec![
        loss("n1", ts("2025-01-10T10:00:00Z"), 9, 0),
        loss("n1", ts("2026-06-14T10:00:00Z"), 1, 0),
    ];
    store.insert(&bt).await.expect("insert");
    let parts = |stats: &[bulkhead_collector::store::TierStats], tier: Tier| {
        stats
            .iter()
            .find(|s| s.tier == tier)
            .map(|s| s.partitions.clone())
            .expect("tier")
    };
    let before = store.stats().await.expect("stats");
    assert_eq!(parts(&before, Tier::Minute), [202501, 202605, 202606]);
    let records_before = store
        .records(&FlowFilter::default(), 100)
        .await
        .expect("records");
    assert_eq!(
        records_before.len(),
        2,
        "the 2025 record is past every retention"
    );

    let done = store.maintain(now).await.expect("maintain");
    let mut dropped = done.dropped.clone();
    dropped.sort();
    assert_eq!(
        dropped,
        [
            "day:202501",
            "hour:202501",
            "minute:202501",
            "minute:202605",
            "month:202501"
        ]
    );
    let after = store.stats().await.expect("stats");
    assert_eq!(parts(&after, Tier::Minute), [202606]);
    assert_eq!(parts(&after, Tier::Hour), [202605, 202606]);
    assert_eq!(parts(&after, Tier::Day), [202605, 202606]);
    assert_eq!(parts(&after, Tier::Month), [202605, 202606]);
    let rows: Vec<u64> = after.iter().map(|s| s.rows).collect();
    assert_eq!(rows, [1, 2, 2, 2]);
    assert_eq!(
        store
            .records(&FlowFilter::default(), 100)
            .await
            .expect("records"),
        records_before,
        "queries read the same before and after"
    );
    assert_eq!(
        store.losses(None, None).await.expect("losses")[0].ring_buffer_events,
        1,
        "old loss reports dropped too"
    );
    assert!(store.maintain(now).await.expect("again").dropped.is_empty());
}

pub async fn restart_loses_nothing<B: Backend>(b: &mut B) {
    b.fresh();
    let now = ts(NOW);
    let (n1, n2) = mixed(now - SignedDuration::from_hours(1));
    let by = GroupBy::parse("source.app,destination.app,verdict").expect("by");
    let (records, groups, stats) = {
        let store = b.open(config(now)).await;
        store
            .insert(&batch("n1", "a", n1.clone()))
            .await
            .expect("n1");
        let mut b2 = batch("n2", "a", n2.clone());
        b2.losses = vec![loss("n2", now, 4, 0)];
        store.insert(&b2).await.expect("n2");
        (
            store
                .records(&FlowFilter::default(), 100)
                .await
                .expect("records"),
            store
                .aggregate(&FlowFilter::default(), &by)
                .await
                .expect("agg"),
            store.stats().await.expect("stats"),
        )
    };
    let store = b.open(config(now)).await;
    assert_eq!(
        store
            .records(&FlowFilter::default(), 100)
            .await
            .expect("records"),
        records
    );
    assert_eq!(
        store
            .aggregate(&FlowFilter::default(), &by)
            .await
            .expect("agg"),
        groups
    );
    assert_eq!(store.stats().await.expect("stats"), stats);
    assert_eq!(store.losses(None, None).await.expect("losses").len(), 1);
    assert!(
        store
            .insert(&batch("n1", "a", n1))
            .await
            .expect("retry")
            .duplicate,
        "batch ids survive a restart"
    );
}

pub async fn losses_per_node<B: Backend>(b: &mut B) {
    b.fresh();
    let now = ts(NOW);
    let store = b.open(config(now)).await;
    let t = now - SignedDuration::from_mins(10);
    let mut b1 = batch("n1", "l1", vec![]);
    b1.losses = vec![
        loss("n1", t, 5, 2),
        loss("n1", t + SignedDuration::from_secs(10), 0, 1),
    ];
    let mut b2 = batch(
        "n2",
        "l1",
        vec![rec("n2", t, web(), db(), 5432, Direction::Ingress)],
    );
    b2.losses = vec![loss("n2", t, 100, 0)];
    store.insert(&b1).await.expect("b1");
    store.insert(&b2).await.expect("b2");
    store.insert(&b1).await.expect("b1 again");
    let nl = |node: &str, ring, export| NodeLoss {
        node: node.into(),
        records: ring + export,
        ring_buffer_events: ring,
        export_records: export,
    };
    assert_eq!(
        store.losses(None, None).await.expect("all"),
        vec![nl("n1", 5, 3), nl("n2", 100, 0)]
    );
    assert_eq!(
        store
            .losses(Some(t + SignedDuration::from_secs(5)), None)
            .await
            .expect("since"),
        vec![nl("n1", 0, 1)]
    );
    assert!(store.losses(None, Some(t)).await.expect("until").is_empty());
}

pub async fn bad_input_is_refused<B: Backend>(b: &mut B) {
    b.fresh();
    let now = ts(NOW);
    let store = b.open(config(now)).await;
    let t = now - SignedDuration::from_mins(5);
    let good = || {
        batch(
            "n1",
            "bad",
            vec![
                rec("n1", t, web(), db(), 80, Direction::Egress),
                rec("n1", t, web(), cache(), 80, Direction::Egress),
            ],
        )
    };
    type Break = fn(&mut bulkhead_api::flow::FlowBatch);
    let cases: Vec<(&str, Break, &str)> = vec![
        (
            "schema",
            |b| b.records[1].schema = "flow/v2".into(),
            "record 1 (10.0.1.10 -> 10.0.2.30:80): schema \"flow/v2\"",
        ),
        (
            "node",
            |b| b.records[1].node = "n9".into(),
            "node \"n9\" is not the batch's node \"n1\"",
        ),
        ("bytes", |b| b.records[0].bytes = u64::MAX, "record 0"),
        (
            "window",
            |b| b.records[1].end = b.records[1].start - SignedDuration::from_secs(1),
            "is before start",
        ),
        (
            "batch node",
            |b| b.node = "N1!".into(),
            "node \"N1!\" is not a valid node name",
        ),
        ("batch id", |b| b.batch_id = String::new(), "batchId"),
        (
            "loss",
            |b| b.losses = vec![loss("n2", ts(NOW), 1, 0)],
            "loss report 0",
        ),
        (
            "label",
            |b| {
                b.records[0].source.labels.insert(String::new(), "x".into());
            },
            "source label",
        ),
    ];
    for (name, brk, msg) in cases {
        let mut bad = good();
        brk(&mut bad);
        match store.insert(&bad).await {
            Err(StoreError::Invalid(m)) => assert!(m.contains(msg), "{name}: {m}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    for s in store.stats().await.expect("stats") {
        assert_eq!(s.rows, 0, "nothing stored in {:?}", s.tier);
    }
    assert!(store.losses(None, None).await.expect("losses").is_empty());
    assert!(
        !store.insert(&good()).await.expect("good").duplicate,
        "a refused batch does not use up its id"
    );
    let _ = FlowVerdict::Allow;
}

/// Records through Services: the columns the service filter and group-by
/// use agree with `FlowFilter::matches` and `aggregate`.
fn via(
    t: Timestamp,
    src: bulkhead_api::flow::FlowEndpoint,
    svc: Option<&str>,
    vip: &str,
    bytes: u64,
) -> FlowRecord {
    let mut r = rec("n1", t, src, db(), 5432, Direction::Egress);
    r.bytes = bytes;
    r.service = Some(bulkhead_api::flow::ServiceAddress {
        address: vip.parse().expect("ip"),
        port: 5432,
        namespace: svc.map(|s| s.split_once('/').expect("ns/name").0.to_string()),
        name: svc.map(|s| s.split_once('/').expect("ns/name").1.to_string()),
        port_name: svc.map(|_| "postgres".to_string()),
    });
    r
}

pub fn service_records(t: Timestamp) -> Vec<FlowRecord> {
    vec![
        via(t, web(), Some("shop/db"), "10.96.0.10", 100),
        // The same Service at another address (an externalIP).
        via(t, cache(), Some("shop/db"), "192.0.2.7", 40),
        via(t, v6pod(), Some("lab/db"), "10.96.0.10", 20),
        // No name (a standalone agent, an older record).
        via(t, node_ep("192.168.0.1", "n1"), None, "10.96.0.10", 8),
        via(t, world("203.0.113.5"), None, "10.96.0.11", 4),
        rec("n1", t, web(), db(), 5432, Direction::Egress),
    ]
}

pub async fn services_filter_and_group<B: Backend>(b: &mut B) {
    b.fresh();
    let now = ts(NOW);
    let store = b.open(config(now)).await;
    let records = service_records(now - SignedDuration::from_hours(1));
    store
        .insert(&batch("n1", "svc-1", records.clone()))
        .await
        .expect("insert");
    let expected = bucketed(&records, 60);
    let vip: std::net::IpAddr = "10.96.0.10".parse().expect("ip");
    let name = bulkhead_insight::query::ServiceName::parse("shop/db").expect("name");
    let filters = [
        (
            "service address",
            FlowFilter {
                service: Some(vip),
                ..Default::default()
            },
            3,
        ),
        (
            "service name",
            FlowFilter {
                service_name: Some(name.clone()),
                ..Default::default()
            },
            2,
        ),
        (
            "service name, the address for records without one",
            FlowFilter {
                service_name: Some(name),
                service: Some(vip),
                ..Default::default()
            },
            3,
        ),
    ];
    for (what, f, n) in &filters {
        let want: Vec<FlowRecord> = expected.iter().filter(|r| f.matches(r)).cloned().collect();
        assert_eq!(want.len(), *n, "{what}: the fixture");
        let got = store.records(f, 1000).await.expect(what);
        assert_eq!(got, want, "records {what}");
        assert!(
            got.iter().all(|r| r.service.is_some()),
            "{what}: the names come back"
        );
    }
    for by in ["service", "service,port", "source.name,service"] {
        let g = GroupBy::parse(by).expect(by);
        for (what, f) in [
            ("all", FlowFilter::default()),
            ("by name", filters[2].1.clone()),
        ] {
            let want = aggregate(expected.iter().filter(|r| f.matches(r)), &g);
            let got = store.aggregate(&f, &g).await.expect(by);
            assert_eq!(got, want, "aggregate {by} over {what}");
        }
    }
    let g = store
        .aggregate(
            &FlowFilter::default(),
            &GroupBy::parse("service").expect("by"),
        )
        .await
        .expect("service");
    let keys: Vec<Option<&str>> = g.iter().map(|g| g.key[0].as_deref()).collect();
    assert_eq!(
        keys,
        [
            None,
            Some("shop/db"),
            Some("lab/db"),
            Some("10.96.0.10"),
            Some("10.96.0.11")
        ]
    );
    assert_eq!(g[1].bytes, 140, "one Service over two of its addresses");
}

#[allow(dead_code)]
pub async fn run_all<B: Backend>(b: &mut B) {
    ingest_filters_groups(b).await;
    idempotent_retry(b).await;
    tier_boundaries(b).await;
    retention_drops_partitions(b).await;
    restart_loses_nothing(b).await;
    losses_per_node(b).await;
    bad_input_is_refused(b).await;
    services_filter_and_group(b).await;
}
