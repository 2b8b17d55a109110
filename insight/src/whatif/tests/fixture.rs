//! The small history every what-if test replays: today's policy, the
//! edges observed, and helpers to compare changes exactly.

use bulkhead_api::policy::Protocol::Tcp;
use serde_json::json;

use super::super::*;
use crate::testing::{day, pod, policy, record, world};

pub(super) fn web_policy(
    ports: &[u16],
    extra_ingress: serde_json::Value,
) -> SegmentationPolicySpec {
    let mut ingress = vec![json!({
        "name": "from-client", "action": "allow",
        "peers": [{"selector": {"matchLabels": {"app": "client"}}}],
        "ports": ports.iter().map(|p| json!({"protocol": "TCP", "port": p})).collect::<Vec<_>>(),
    })];
    if let serde_json::Value::Array(more) = extra_ingress {
        ingress.extend(more);
    }
    policy(json!({
        "scope": {"selector": {"matchLabels": {"app": "web"}}},
        "enforcement": "full",
        "ingress": ingress,
        "egress": [{"name": "to-db", "action": "allow",
            "peers": [{"selector": {"matchLabels": {"app": "db"}}}],
            "ports": [{"protocol": "TCP", "port": 5432}]}],
    }))
}

pub(super) fn db_policy(peer_app: &str) -> SegmentationPolicySpec {
    policy(json!({
        "scope": {"selector": {"matchLabels": {"app": "db"}}},
        "enforcement": "full",
        "ingress": [{"name": "from-web", "action": "allow",
            "peers": [{"selector": {"matchLabels": {"app": peer_app}}}],
            "ports": [{"protocol": "TCP", "port": 5432}]}],
    }))
}

pub(super) fn api_policy(enforcement: &str, ingress: serde_json::Value) -> SegmentationPolicySpec {
    policy(json!({
        "scope": {"selector": {"matchLabels": {"app": "api"}}},
        "enforcement": enforcement,
        "ingress": ingress,
    }))
}

pub(super) fn today() -> Snapshot {
    let mut s = Snapshot::default();
    s.policies
        .insert("web".into(), web_policy(&[80, 443], json!([])));
    s.policies.insert("db".into(), db_policy("web"));
    s.policies
        .insert("api".into(), api_policy("selective", json!([])));
    s
}

pub(super) struct Edge {
    pub(super) from: &'static str,
    pub(super) to: &'static str,
    pub(super) port: u16,
}

pub(super) const CLIENT_WEB_80: Edge = Edge {
    from: "client",
    to: "web",
    port: 80,
};
pub(super) const CLIENT_WEB_443: Edge = Edge {
    from: "client",
    to: "web",
    port: 443,
};
pub(super) const WEB_DB: Edge = Edge {
    from: "web",
    to: "db",
    port: 5432,
};
pub(super) const OTHER_WEB_80: Edge = Edge {
    from: "other",
    to: "web",
    port: 80,
};
pub(super) const WEB_WORLD: Edge = Edge {
    from: "web",
    to: "198.51.100.7",
    port: 443,
};
pub(super) const CLIENT_API: Edge = Edge {
    from: "client",
    to: "api",
    port: 8080,
};

pub(super) fn end(app: &str) -> bulkhead_api::flow::FlowEndpoint {
    match app {
        "client" => pod("shop", "client-7f9", &[("app", "client")], "10.0.0.1"),
        "web" => pod("shop", "web-0", &[("app", "web")], "10.0.0.2"),
        "db" => pod("shop", "db-0", &[("app", "db")], "10.0.0.3"),
        "other" => pod("shop", "other-1", &[("app", "other")], "10.0.0.4"),
        "api" => pod("shop", "api-0", &[("app", "api")], "10.0.0.5"),
        addr => world(addr),
    }
}

pub(super) fn history() -> Vec<FlowRecord> {
    let mut out = Vec::new();
    for (i, e) in [
        CLIENT_WEB_80,
        CLIENT_WEB_443,
        WEB_DB,
        OTHER_WEB_80,
        WEB_WORLD,
        CLIENT_API,
    ]
    .iter()
    .enumerate()
    {
        for d in 0..3 {
            out.push(record(
                &end(e.from),
                &end(e.to),
                Tcp,
                e.port,
                day(d),
                1 + i as u64,
            ));
        }
    }
    out
}

pub(super) fn options(as_enforced: bool) -> WhatIfOptions {
    WhatIfOptions {
        since: day(0),
        until: day(10),
        as_enforced,
        compile: CompileOptions::default(),
    }
}

/// The changes as (from, to, port), for exact comparison.
pub(super) fn edges(changes: &[Change]) -> Vec<(String, String, u16)> {
    let side = |g: &EndpointGroup| {
        g.labels
            .get("app")
            .cloned()
            .or_else(|| g.name.clone())
            .unwrap_or_default()
    };
    let mut out: Vec<_> = changes
        .iter()
        .map(|c| (side(&c.from), side(&c.to), c.port))
        .collect();
    out.sort();
    out
}

pub(super) fn expect(edges_: &[Edge]) -> Vec<(String, String, u16)> {
    let mut out: Vec<_> = edges_
        .iter()
        .map(|e| (e.from.to_string(), e.to.to_string(), e.port))
        .collect();
    out.sort();
    out
}

pub(super) fn run(today: &Snapshot, draft: Draft, as_enforced: bool) -> WhatIf {
    what_if(today, &draft, &history(), &options(as_enforced)).expect("what-if runs")
}

pub(super) fn draft_policy(name: &str, spec: SegmentationPolicySpec) -> Draft {
    Draft {
        policies: [(name.to_string(), spec)].into(),
        ..Draft::default()
    }
}
