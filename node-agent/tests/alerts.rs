//! The chart's agent alerts (charts/bulkhead/files/agent-alerts.yaml) under
//! `promtool test rules`: BulkheadConntrackNearlyFull fires past 85 % fill
//! held for 5 minutes, on the node that is full, and not at or below 85 %.
//! Needs promtool (Debian's `prometheus` package); fails without it.

use std::path::Path;
use std::process::Command;

#[test]
fn conntrack_alert_fires_above_85_percent_for_5_minutes() {
    let rules =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/bulkhead/files/agent-alerts.yaml");
    let dir = std::env::temp_dir().join(format!("bulkhead-alerts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // node-a: 90 % from the start; node-b: exactly 85 %; node-c: 86 % for 3
    // minutes only, then 50 %. Capacity 131072 as the map is built.
    let test = format!(
        r#"rule_files: ["{rules}"]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'bulkhead_agent_map_entries{{map="bh_conntrack",instance="node-a:9465"}}'
        values: '117965x10'
      - series: 'bulkhead_agent_map_capacity{{map="bh_conntrack",instance="node-a:9465"}}'
        values: '131072x10'
      - series: 'bulkhead_agent_map_entries{{map="bh_conntrack",instance="node-b:9465"}}'
        values: '111411x10'
      - series: 'bulkhead_agent_map_capacity{{map="bh_conntrack",instance="node-b:9465"}}'
        values: '131072x10'
      - series: 'bulkhead_agent_map_entries{{map="bh_conntrack",instance="node-c:9465"}}'
        values: '112722x3 65536x7'
      - series: 'bulkhead_agent_map_capacity{{map="bh_conntrack",instance="node-c:9465"}}'
        values: '131072x10'
      - series: 'bulkhead_agent_map_entries{{map="bh_policy",instance="node-b:9465"}}'
        values: '262144x10'
      - series: 'bulkhead_agent_map_capacity{{map="bh_policy",instance="node-b:9465"}}'
        values: '262144x10'
    alert_rule_test:
      - eval_time: 4m
        alertname: BulkheadConntrackNearlyFull
        exp_alerts: []
      - eval_time: 6m
        alertname: BulkheadConntrackNearlyFull
        exp_alerts:
          - exp_labels: {{severity: warning, instance: "node-a:9465"}}
            exp_annotations:
              summary: "conntrack table of node-a:9465 is 90% full"
              description: "Bulkhead's conntrack map on node-a:9465 has been above 85 % of its capacity for 5 minutes."
"#,
        rules = rules.display()
    );
    let file = dir.join("test.yaml");
    std::fs::write(&file, test).expect("write test");
    let out = Command::new("promtool")
        .args(["test", "rules"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool: {e}; install it with `apt-get install -y prometheus`")
        });
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        out.status.success(),
        "promtool test rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
