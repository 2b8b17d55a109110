//! Top-talker ranks on a history small enough to add up by hand.

use super::{ingress_view, pod, rec, world};
use crate::talkers::{top_talkers, SortBy, TalkDirection, TalkerKey, TalkersQuery};
use bulkhead_api::flow::FlowRecord;

/// web (n1) → db (n2) :5432   10 flows  1000 B
/// web (n1) → cache        :6379   5 flows  5000 B
/// api (n3) → db           :5432   3 flows   300 B
/// db  (n2) → 8.8.8.8      :53/UDP 1 flow    100 B
/// plus n2's ingress view of the first (must not count twice).
fn history() -> Vec<FlowRecord> {
    let web = pod("10.0.0.1", "shop/web-0", "web", "prod");
    let db = pod("10.0.0.2", "shop/db-0", "db", "prod");
    let cache = pod("10.0.0.3", "shop/cache-0", "cache", "prod");
    let api = pod("10.0.0.4", "shop/api-0", "api", "dev");
    let first = rec("n1", web.clone(), db.clone(), 5432, 10, 1000);
    vec![
        first.clone(),
        rec("n1", web, cache, 6379, 5, 5000),
        rec("n3", api, db.clone(), 5432, 3, 300),
        rec("n2", db, world("8.8.8.8", None), 53, 1, 100),
        ingress_view(&first, "n2"),
    ]
}

fn ranked(q: &TalkersQuery) -> Vec<(String, u64, u64, usize)> {
    top_talkers(&history(), q)
        .iter()
        .map(|t| {
            (
                t.label(&q.by),
                t.sent.flows + t.received.flows,
                t.sent.bytes + t.received.bytes,
                t.peers,
            )
        })
        .collect()
}

fn query(sort: SortBy, direction: TalkDirection) -> TalkersQuery {
    TalkersQuery {
        sort,
        direction,
        ..TalkersQuery::default()
    }
}

#[test]
fn ranks_by_flows_bytes_and_peers() {
    // web: sent 10+5 = 15 flows, 6000 B, peers db and cache.
    // db: received 10+3, sent 1 = 14 flows, 1400 B, peers web, api, world (-).
    // cache 5 / 5000 B / 1 peer; api 3 / 300 B / 1; world ("-") 1 / 100 B / 1.
    let by_flows = ranked(&query(SortBy::Flows, TalkDirection::Both));
    let want = [
        ("web", 15, 6000, 2),
        ("db", 14, 1400, 3),
        ("cache", 5, 5000, 1),
        ("api", 3, 300, 1),
        ("-", 1, 100, 1),
    ];
    let want: Vec<_> = want
        .iter()
        .map(|(n, f, b, p)| (n.to_string(), *f, *b, *p))
        .collect();
    assert_eq!(by_flows, want);

    let names = |v: Vec<(String, u64, u64, usize)>| v.into_iter().map(|t| t.0).collect::<Vec<_>>();
    let cases = [
        (
            SortBy::Bytes,
            TalkDirection::Both,
            vec!["web", "cache", "db", "api", "-"],
        ),
        // Ties (one peer each) are broken by name: "-" sorts before letters.
        (
            SortBy::Peers,
            TalkDirection::Both,
            vec!["db", "web", "-", "api", "cache"],
        ),
        // Only senders.
        (
            SortBy::Flows,
            TalkDirection::Egress,
            vec!["web", "api", "db"],
        ),
        (
            SortBy::Flows,
            TalkDirection::Ingress,
            vec!["db", "cache", "-"],
        ),
    ];
    for (sort, direction, want) in cases {
        assert_eq!(
            names(ranked(&query(sort, direction))),
            want,
            "{sort:?} {direction:?}"
        );
    }
}

#[test]
fn names_main_peers_and_ports_and_honours_the_limit() {
    let q = TalkersQuery {
        limit: 2,
        ..TalkersQuery::default()
    };
    let t = top_talkers(&history(), &q);
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].rank, 1);
    let peers: Vec<(&str, u64)> = t[0]
        .top_peers
        .iter()
        .map(|p| (p.name.as_str(), p.flows))
        .collect();
    assert_eq!(peers, [("db", 10), ("cache", 5)]);
    let ports: Vec<(&str, u64)> = t[1]
        .top_ports
        .iter()
        .map(|p| (p.name.as_str(), p.flows))
        .collect();
    assert_eq!(ports, [("5432/TCP", 13), ("53/UDP", 1)]);
}

#[test]
fn groups_by_several_keys_namespace_node_and_pod() {
    let by = |keys: &[&str]| TalkersQuery {
        by: keys.iter().map(|k| k.parse().expect("key")).collect(),
        ..TalkersQuery::default()
    };
    assert_eq!(
        ranked(&by(&["app", "env"]))
            .iter()
            .map(|t| t.0.as_str())
            .collect::<Vec<_>>(),
        ["web,prod", "db,prod", "cache,prod", "api,dev", "-,-"]
    );
    // The node of each address comes from the records where it is the local
    // side: web on n1, db on n2 (its egress and ingress views), api on n3;
    // cache is never local and world has no node.
    let nodes = ranked(&by(&["node"]));
    let nodes: Vec<(&str, u64)> = nodes.iter().map(|t| (t.0.as_str(), t.1)).collect();
    assert_eq!(nodes, [("n1", 15), ("n2", 14), ("-", 6), ("n3", 3)]);
    assert_eq!(ranked(&by(&["namespace"]))[0].0, "shop");
    assert_eq!(ranked(&by(&["pod"]))[4].0, "8.8.8.8");
    assert!("".parse::<TalkerKey>().is_err());
}
