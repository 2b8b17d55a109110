mod support;
use bulkhead_api::policy::Protocol::Tcp;
use bulkhead_policy::Verdict::{Allow, Deny};
use support::*;

#[test]
fn web_to_db_in_full_mode() {
    let w = World::new()
        .ns("prod", &[("env", "prod")])
        .node("n1", "192.168.0.1", &[])
        .node("n2", "192.168.0.2", &[])
        .pod("prod", "web", "n1", "10.0.1.1", &[("app", "web")])
        .pod("prod", "db", "n2", "10.0.2.1", &[("app", "db")])
        .mapping("m", APP_ENV_MAPPING)
        .policy(
            "db",
            r#"
scope: {selector: {matchLabels: {app: db}}}
enforcement: full
ingress:
- action: allow
  peers: [{selector: {matchLabels: {app: web}}}]
  ports: [{protocol: TCP, port: 5432}]
"#,
        );
    let out = w.compile();
    assert_eq!(verdict(&out, "prod/web", "prod/db", Tcp, 5432), Allow);
    assert_eq!(verdict(&out, "prod/web", "prod/db", Tcp, 80), Deny);
    // full mode is default-deny both ways: db has no egress rule
    assert_eq!(verdict(&out, "prod/db", "prod/web", Tcp, 80), Deny);
}

