//! Rule hits into the policy's status, against the fake API server: moved
//! only at the hits interval, written only when they changed, so an idle
//! cluster costs no write at all.

use serde_json::json;

use super::tests::{echo, lines, passes, published, POLICIES, RULE_MAPS};
use super::*;

fn patches(calls: &[crate::fixtures::Call]) -> Vec<&crate::fixtures::Call> {
    calls
        .iter()
        .filter(|c| c.method == http::Method::PATCH)
        .collect()
}

#[tokio::test]
async fn hits_reach_the_policy_at_the_interval_only_on_change_and_idle_writes_nothing() {
    let (mut engine, metrics, api) = published().await;
    echo(&mut engine, &api);
    assert!(matches!(engine.step(true).await, Ok(false)));

    // The agent programs its map and reports three hits of the policy's rule.
    let path = format!("{RULE_MAPS}/n1");
    let mut map = api.get(&path).expect("map");
    let id = map["spec"]["rules"][0]["id"].clone();
    let report = |hits: u64, last: &str| json!([{"id": id, "policy": "db", "rule": "ingress[0]", "hits": hits, "lastHit": last}]);
    map["status"] = json!({
        "programmedGeneration": map["metadata"]["generation"],
        "ruleHits": report(3, "2026-03-01T10:00:00Z"),
    });
    let obj: NodeRuleMap = serde_json::from_value(map.clone()).expect("NodeRuleMap");
    engine.handle(FeedEvent::RuleMap(Box::new(obj)));
    assert!(matches!(engine.step(true).await, Ok(true)));
    let calls = api.take_calls();
    let written = patches(&calls);
    assert_eq!(written.len(), 1, "{:?}", lines(&calls));
    assert_eq!(
        written[0].body["status"]["ruleHits"],
        json!([]),
        "an agent's report moves no hits before the interval"
    );

    // The interval comes round: one write, with the hits.
    engine.hits_due = true;
    assert!(matches!(engine.step(true).await, Ok(true)));
    let calls = api.take_calls();
    assert_eq!(lines(&calls), [format!("PATCH {POLICIES}/db/status")]);
    assert_eq!(
        calls[0].body["status"]["ruleHits"],
        json!([{"rule": "ingress[0]", "hits": 3, "lastHit": "2026-03-01T10:00:00Z", "nodes": 1}])
    );

    // Idle: more intervals, no call at all.
    for _ in 0..3 {
        engine.hits_due = true;
        assert!(matches!(engine.step(true).await, Ok(true)));
    }
    assert_eq!(lines(&api.take_calls()), Vec::<String>::new());

    // A new hit: the next interval writes it, once.
    map["status"]["ruleHits"] = report(4, "2026-03-02T10:00:00Z");
    let obj: NodeRuleMap = serde_json::from_value(map).expect("NodeRuleMap");
    engine.handle(FeedEvent::RuleMap(Box::new(obj)));
    assert!(matches!(engine.step(true).await, Ok(true)));
    assert_eq!(lines(&api.take_calls()), Vec::<String>::new());
    engine.hits_due = true;
    assert!(matches!(engine.step(true).await, Ok(true)));
    let calls = api.take_calls();
    assert_eq!(lines(&calls), [format!("PATCH {POLICIES}/db/status")]);
    assert_eq!(calls[0].body["status"]["ruleHits"][0]["hits"], json!(4));
    assert_eq!(
        passes(&metrics, "hits"),
        6,
        "the first publish and five intervals"
    );

    // The rule counts as used: no never_hit in the metric.
    let never = metrics
        .rules_recertify
        .get_or_create(&crate::metrics::ReasonLabel {
            reason: "never_hit".into(),
        })
        .get();
    assert_eq!(never, 0);
}
