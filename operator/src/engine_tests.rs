//! The engine against a fake API server: which calls a publish pass makes,
//! and which events cost one.

use std::sync::atomic::AtomicBool;

use bulkhead_api::{NodeRuleMap, SegmentationPolicy};
use bulkhead_policy::snapshot::{Namespace, Node, Pod, PodKey};
use bulkhead_policy::Change;
use kube::runtime::events::Reporter;
use prometheus_client::registry::Registry;
use serde_json::{json, Value};

use super::*;
use crate::fixtures::{Call, FakeApi};
use crate::metrics::PassLabel;

pub(super) const RULE_MAPS: &str = "/apis/bulkhead.dev/v1alpha1/noderulemaps";
pub(super) const SHARDS: &str = "/apis/bulkhead.dev/v1alpha1/identitymaps";
pub(super) const POLICIES: &str = "/apis/bulkhead.dev/v1alpha1/segmentationpolicies";
pub(super) const MAPPINGS: &str = "/apis/bulkhead.dev/v1alpha1/labelmappings";

pub(super) fn engine(client: Client) -> (Engine, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::register(&mut Registry::default()));
    let health = Arc::new(Health {
        registry: Registry::default(),
        ready: AtomicBool::new(false),
    });
    let reporter = Reporter {
        controller: "test".into(),
        instance: None,
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let options = CompileOptions {
        identity_shards: 2,
        ..CompileOptions::default()
    };
    let engine = Engine::new(client, options, metrics.clone(), health, recorder);
    (engine, metrics)
}

pub(super) fn passes(metrics: &Metrics, kind: &str) -> u64 {
    metrics
        .passes
        .get_or_create(&PassLabel { kind: kind.into() })
        .get()
}

pub(super) fn change(change: Change) -> FeedEvent {
    FeedEvent::Change {
        change,
        generation: None,
        policy: None,
    }
}

fn pod(app: &str, addr: &str) -> Pod {
    Pod {
        labels: [("app".to_string(), app.to_string())].into(),
        node: Some("n1".into()),
        addresses: vec![addr.parse().expect("address")],
        host_network: false,
        ..Pod::default()
    }
}

pub(super) fn policy_spec() -> Value {
    json!({"scope": {"selector": {"matchLabels": {"app": "db"}}},
           "ingress": [{"action": "allow",
                        "peers": [{"selector": {"matchLabels": {"app": "web"}}}],
                        "ports": [{"protocol": "TCP", "port": 5432}]}]})
}

/// A cluster of one node with a web and a db pod and a policy for db, as the
/// watches would report it; the policy object exists in the fake API.
pub(super) fn feed_cluster(engine: &mut Engine, api: &FakeApi) {
    let policy = json!({"apiVersion": "bulkhead.dev/v1alpha1", "kind": "SegmentationPolicy",
        "metadata": {"name": "db", "generation": 1}, "spec": policy_spec()});
    api.put(&format!("{POLICIES}/db"), policy);
    let mapping = json!({"priority": 10, "rules": [{"match": {"pods": {}},
        "copyLabels": [{"key": "app", "fromLabel": "app"}]}]});
    let object = json!({"apiVersion": "bulkhead.dev/v1alpha1", "kind": "LabelMapping",
        "metadata": {"name": "app-env", "generation": 1}, "spec": mapping});
    api.put(&format!("{MAPPINGS}/app-env"), object);
    let node = Node {
        labels: Default::default(),
        addresses: vec!["192.168.0.1".parse().expect("address")],
    };
    let events = [
        change(Change::UpsertNode("n1".into(), node)),
        change(Change::UpsertNamespace("prod".into(), Namespace::default())),
        change(Change::UpsertPod(
            PodKey::new("prod", "web"),
            pod("web", "10.0.1.1"),
        )),
        change(Change::UpsertPod(
            PodKey::new("prod", "db"),
            pod("db", "10.0.1.2"),
        )),
        change(Change::UpsertMapping(
            "app-env".into(),
            serde_json::from_value(mapping).expect("mapping"),
        )),
        FeedEvent::Change {
            change: Change::UpsertPolicy(
                "db".into(),
                serde_json::from_value(policy_spec()).expect("policy"),
            ),
            generation: Some((Kind::SegmentationPolicy, "db".into(), 1)),
            policy: None,
        },
    ];
    for e in events {
        engine.handle(e);
    }
    for kind in Kind::required(false) {
        engine.handle(FeedEvent::Synced(kind));
    }
    engine.handle(FeedEvent::PublishedSynced("identitymap"));
    engine.handle(FeedEvent::PublishedSynced("noderulemap"));
}

/// What the watches deliver after the operator's own writes: every stored
/// rule map and shard, as the API server has them.
pub(super) fn echo(engine: &mut Engine, api: &FakeApi) {
    let obj = api.get(&format!("{RULE_MAPS}/n1")).expect("rule map");
    let obj: NodeRuleMap = serde_json::from_value(obj).expect("NodeRuleMap");
    engine.handle(FeedEvent::RuleMap(Box::new(obj)));
    for shard in ["shard-0", "shard-1"] {
        let obj = api.get(&format!("{SHARDS}/{shard}")).expect("shard");
        let obj = serde_json::from_value(obj).expect("IdentityMap");
        engine.handle(FeedEvent::Shard(Box::new(obj)));
    }
}

/// An engine that has published the cluster once, and its fake API with
/// the calls of that pass forgotten.
pub(super) async fn published() -> (Engine, Arc<Metrics>, FakeApi) {
    let (client, api) = FakeApi::start();
    let (mut engine, metrics) = engine(client);
    feed_cluster(&mut engine, &api);
    assert!(matches!(engine.step(true).await, Ok(true)));
    api.take_calls();
    (engine, metrics, api)
}

pub(super) fn lines(calls: &[Call]) -> Vec<String> {
    let mut l: Vec<String> = calls.iter().map(Call::line).collect();
    l.sort();
    l
}

#[tokio::test]
async fn the_first_pass_applies_shards_and_maps_and_writes_the_policy_status() {
    let (client, api) = FakeApi::start();
    let (mut engine, metrics) = engine(client);
    feed_cluster(&mut engine, &api);
    assert!(matches!(engine.step(true).await, Ok(true)));
    assert_eq!(passes(&metrics, "full"), 1);
    let calls = api.take_calls();
    assert_eq!(
        lines(&calls),
        [
            format!("GET {SHARDS}"), // the numbering taken over on winning
            format!("GET {MAPPINGS}/app-env/status"),
            format!("GET {POLICIES}/db/status"),
            format!("PATCH {SHARDS}/shard-0"),
            format!("PATCH {SHARDS}/shard-1"),
            format!("PATCH {MAPPINGS}/app-env/status"),
            format!("PATCH {RULE_MAPS}/n1"),
            format!("PATCH {POLICIES}/db/status"),
        ]
    );
    let status = api.get(&format!("{POLICIES}/db")).expect("policy");
    let status: SegmentationPolicy = serde_json::from_value(status).expect("policy");
    let status = status.status.expect("a status");
    assert_eq!((status.nodes_programmed, status.nodes_total), (0, 1));
    assert_eq!(status.matched_endpoints, 1);
}

/// Defect 4: the echo of the operator's own apply and an agent's status
/// write each cost a full publish pass.
#[tokio::test]
async fn defect_4_the_operators_own_echo_costs_nothing_and_an_agent_status_only_a_status_pass() {
    let (mut engine, metrics, api) = published().await;

    echo(&mut engine, &api);
    assert!(matches!(engine.step(true).await, Ok(false)));
    assert_eq!(passes(&metrics, "full"), 1, "the echo cost a full pass");
    assert_eq!(lines(&api.take_calls()), Vec::<String>::new());

    // The agent programs its map: status only.
    let path = format!("{RULE_MAPS}/n1");
    let mut map = api.get(&path).expect("map");
    map["status"] = json!({"programmedGeneration": map["metadata"]["generation"]});
    api.put(&path, map.clone());
    let map: NodeRuleMap = serde_json::from_value(map).expect("NodeRuleMap");
    engine.handle(FeedEvent::RuleMap(Box::new(map)));
    assert!(matches!(engine.step(true).await, Ok(true)));
    assert_eq!(
        passes(&metrics, "full"),
        1,
        "a status write cost a full pass"
    );
    assert_eq!(passes(&metrics, "status"), 1);
    let calls = api.take_calls();
    assert_eq!(
        lines(&calls),
        [
            format!("PATCH {POLICIES}/db/status"),
            "POST /apis/events.k8s.io/v1/namespaces/default/events".to_string(),
        ]
    );
    let written = &calls
        .iter()
        .find(|c| c.method == http::Method::PATCH)
        .expect("status patch")
        .body;
    assert_eq!(written["status"]["nodesProgrammed"], json!(1));
}

#[tokio::test]
async fn a_rule_map_changed_by_someone_else_is_put_back() {
    let (mut engine, metrics, api) = published().await;
    echo(&mut engine, &api);
    let path = format!("{RULE_MAPS}/n1");
    let mut map = api.get(&path).expect("map");
    map["spec"]["rules"] = json!([]);
    api.put(&path, map.clone());
    let map: NodeRuleMap = serde_json::from_value(map).expect("NodeRuleMap");
    engine.handle(FeedEvent::RuleMap(Box::new(map)));
    assert!(matches!(engine.step(true).await, Ok(true)));
    assert_eq!(passes(&metrics, "full"), 2);
    assert_eq!(lines(&api.take_calls()), [format!("PATCH {RULE_MAPS}/n1")]);
}

/// Defect 1, the failover half: a standby that wins the Lease publishes the
/// numbers the previous leader published, not its own.
#[tokio::test]
async fn defect_1_a_standby_that_wins_the_lease_publishes_the_leaders_numbers() {
    let (client, api) = FakeApi::start();
    // The old leader numbered db 300 and web 301 (the standby would have
    // started at 256).
    let labels = |app: &str| json!({"app": app});
    let shard = |i: u32, identities: Value| {
        json!({"apiVersion": "bulkhead.dev/v1alpha1", "kind": "IdentityMap",
               "metadata": {"name": format!("shard-{i}")},
               "spec": {"shard": i, "shards": 2, "identities": identities}})
    };
    api.put(
        &format!("{SHARDS}/shard-0"),
        shard(0, json!([{"id": 300, "labels": labels("db")}])),
    );
    api.put(
        &format!("{SHARDS}/shard-1"),
        shard(1, json!([{"id": 301, "labels": labels("web")}])),
    );
    let (mut engine, _) = engine(client);
    // The standby started before the leader published: its own numbering.
    feed_cluster(&mut engine, &api);
    assert!(matches!(engine.step(false).await, Ok(false)));
    let own = engine.compiler.as_ref().expect("compiled").output();
    assert!(own.identities.keys().all(|id| *id < 300), "{own:?}");
    // It wins.
    assert!(matches!(engine.step(true).await, Ok(true)));
    let out = engine.compiler.as_ref().expect("compiled").output();
    let numbers: Vec<u32> = out.identities.keys().copied().collect();
    assert_eq!(numbers, [300, 301]);
    let map = api.get(&format!("{RULE_MAPS}/n1")).expect("map");
    let ids: Vec<&Value> = map["spec"]["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .map(|e| &e["identity"])
        .collect();
    assert_eq!(ids, [&json!(300), &json!(301)]);
}

#[tokio::test(start_paused = true)]
async fn a_hung_apply_fails_the_pass_in_time_instead_of_blocking_the_loop() {
    let (client, api) = FakeApi::start();
    let (mut engine, metrics) = engine(client);
    feed_cluster(&mut engine, &api);
    api.stall(|c| c.method == http::Method::PATCH && c.path.starts_with(SHARDS));
    let started = tokio::time::Instant::now();
    let result = engine.step(true).await;
    assert!(matches!(result, Err(Error::Timeout { .. })), "{result:?}");
    assert!(
        started.elapsed() <= CALL_TIMEOUT * 2,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(passes(&metrics, "full"), 0);
    api.resume();
    assert!(matches!(engine.step(true).await, Ok(true)));
}

fn published_version(metrics: &Metrics, kind: &str) -> i64 {
    metrics
        .published_resource_version
        .get_or_create(&KindLabel { kind: kind.into() })
        .get()
}

#[tokio::test(start_paused = true)]
async fn the_published_resource_version_moves_only_once_a_pass_has_published_what_was_fed() {
    let (client, api) = FakeApi::start();
    let (engine, metrics) = engine(client);
    let observed = Arc::new(Observed::default());
    let mut engine = engine.with_observed(observed.clone());
    feed_cluster(&mut engine, &api);
    // Publishing stalls: the pass that takes the new pod in fails in time.
    api.stall(|c| c.method == http::Method::PATCH && c.path.starts_with(RULE_MAPS));
    let (tx, rx) = mpsc::channel(16);
    let (_leader_tx, leader_rx) = watch::channel(true);
    let run = tokio::spawn(engine.run(rx, leader_rx));
    let cache = change(Change::UpsertPod(
        PodKey::new("prod", "cache"),
        pod("web", "10.0.1.3"),
    ));
    tx.send(cache).await.expect("engine runs");
    observed.fed("pod", Some("7"));
    for _ in 0..20 {
        tokio::time::sleep(CALL_TIMEOUT).await;
        assert_eq!(
            published_version(&metrics, "pod"),
            0,
            "nothing is published while the rule map cannot be written"
        );
    }
    api.resume();
    let mut waited = 0;
    while published_version(&metrics, "pod") != 7 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
        assert!(
            waited < 600,
            "the retried pass never published resourceVersion 7"
        );
    }
    let maps = api.get(&format!("{RULE_MAPS}/n1")).expect("rule map");
    assert!(
        maps.to_string().contains("10.0.1.3"),
        "the published rule map holds the pod fed at 7: {maps}"
    );
    run.abort();
}
