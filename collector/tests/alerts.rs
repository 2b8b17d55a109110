//! The chart's collector alerts (charts/bulkhead/files/collector-alerts.yaml)
//! under `promtool test rules`: a detection pages once, for its detector and
//! severity, and clears 10 minutes later; a sink that only retries for 10
//! minutes warns, one that recovers does not; a dropped or rejected alert is
//! critical. Needs promtool (Debian's `prometheus` package); fails without it.

use std::path::Path;
use std::process::Command;

#[test]
fn collector_alerts_fire_on_detections_and_delivery_trouble() {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../charts/bulkhead/files/collector-alerts.yaml");
    let dir = tempfile::tempdir().expect("temp dir");
    let test = format!(
        r#"rule_files: ["{rules}"]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # One scan alert at minute 2; lateral movement never.
      - series: 'bulkhead_collector_alerts_total{{detector="scan",severity="high",instance="c:8080"}}'
        values: '0 0 1x30'
      - series: 'bulkhead_collector_alerts_total{{detector="lateralMovement",severity="medium",instance="c:8080"}}'
        values: '0x32'
      # The webhook only retries from minute 1 on; syslog retried twice,
      # then sent.
      - series: 'bulkhead_collector_alert_deliveries_total{{sink="webhook",result="retried",instance="c:8080"}}'
        values: '0 1+1x31'
      - series: 'bulkhead_collector_alert_deliveries_total{{sink="webhook",result="sent",instance="c:8080"}}'
        values: '0x32'
      - series: 'bulkhead_collector_alert_deliveries_total{{sink="syslog-tls",result="retried",instance="c:8080"}}'
        values: '0 1 2x30'
      - series: 'bulkhead_collector_alert_deliveries_total{{sink="syslog-tls",result="sent",instance="c:8080"}}'
        values: '0 0 0 1+1x29'
      # Two dropped at minute 20.
      - series: 'bulkhead_collector_alert_deliveries_total{{sink="syslog-tls",result="dropped",instance="c:8080"}}'
        values: '0x19 2x12'
    alert_rule_test:
      - eval_time: 1m
        alertname: BulkheadSuspiciousConnectivity
        exp_alerts: []
      - eval_time: 5m
        alertname: BulkheadSuspiciousConnectivity
        exp_alerts:
          - exp_labels: {{severity: critical, bulkhead_severity: high, detector: scan}}
            exp_annotations:
              summary: "Bulkhead detected scan (high)"
              description: "The collector raised scan alerts in the last 10 minutes; see the SIEM, the webhook's receiver or GET /api/v1/alerts for their sources and ids."
      - eval_time: 15m
        alertname: BulkheadSuspiciousConnectivity
        exp_alerts: []
      - eval_time: 9m
        alertname: BulkheadAlertDeliveryFailing
        exp_alerts: []
      - eval_time: 14m
        alertname: BulkheadAlertDeliveryFailing
        exp_alerts:
          - exp_labels: {{severity: warning, sink: webhook}}
            exp_annotations:
              summary: "Bulkhead cannot deliver alerts to webhook"
              description: "Every attempt to deliver to webhook has failed for 10 minutes; alerts wait in the collector's queue."
      - eval_time: 18m
        alertname: BulkheadAlertsLost
        exp_alerts: []
      - eval_time: 22m
        alertname: BulkheadAlertsLost
        exp_alerts:
          - exp_labels: {{severity: critical, sink: syslog-tls, result: dropped}}
            exp_annotations:
              summary: "Bulkhead alerts did not reach syslog-tls (dropped)"
              description: "Alerts were dropped for syslog-tls in the last 10 minutes; the collector's log names their ids."
"#,
        rules = rules.display()
    );
    let file = dir.path().join("test.yaml");
    std::fs::write(&file, test).expect("write test");
    let out = Command::new("promtool")
        .args(["test", "rules"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool: {e}; install it with `apt-get install -y prometheus`")
        });
    assert!(
        out.status.success(),
        "promtool test rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
