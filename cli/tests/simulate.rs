//! `simulate` on fixture directories: one flow at a time.

mod support;

use support::{fixture, run};

fn flow(from: &str, to: &str, extra: &[&str]) -> serde_json::Value {
    let basic = fixture("basic");
    let args = [
        &["simulate", &basic, "--from", from, "--to", to, "-o", "json"],
        extra,
    ]
    .concat();
    run(&args).json()
}

#[test]
fn json_is_one_object_with_the_verdict_and_both_sides() {
    let v = flow("x/a", "x/b", &["--port", "80", "--protocol", "TCP"]);
    assert_eq!(v["verdict"], "allow");
    assert_eq!(
        v["wouldBe"], "deny",
        "x/a's egress is in visibility with no rule"
    );
    assert_eq!(
        (v["from"].as_str(), v["to"].as_str()),
        (Some("x/a"), Some("x/b"))
    );
    assert_eq!(
        (v["protocol"].as_str(), v["port"].as_u64()),
        (Some("TCP"), Some(80))
    );
    assert_eq!(
        (v["source"].as_str(), v["destination"].as_str()),
        (Some("10.1.0.1"), Some("10.1.0.2"))
    );
    assert_eq!(v["egress"]["mode"], "visibility");
    assert_eq!(v["egress"]["verdict"], "allow");
    assert_eq!(v["egress"]["wouldBe"], "deny");
    assert_eq!(v["ingress"]["mode"], "full");
    assert_eq!(v["ingress"]["rule"]["policy"], "b-from-a");
    assert_eq!(v["ingress"]["rule"]["rule"], "web-from-a");
    assert_eq!(v["ingress"]["rule"]["action"], "allow");
    assert_eq!(v["decidedBy"], "ingress");
    let id = v["ingress"]["identity"].to_string();
    assert_eq!(v["identities"][id.as_str()]["app"], "b");
}

#[test]
fn verdicts_table() {
    // (from, to, extra args, verdict, the side that decides)
    let cases: &[(&str, &str, &[&str], &str, &str)] = &[
        ("x/a", "x/b", &["--port", "81"], "deny", "ingress"),
        ("y/a", "x/b", &["--port", "80"], "deny", "ingress"),
        ("y/a", "x/a", &["--port", "80"], "deny", "egress"),
        ("x/b", "x/a", &["--port", "80"], "deny", "egress"),
        ("x/a", "x/b", &["--protocol", "ICMP"], "allow", "ingress"),
        ("x/a", "x/b", &["--ports", "80/UDP"], "deny", "ingress"),
        ("203.0.113.9", "x/b", &["--port", "80"], "deny", "ingress"),
        ("vm1", "x/b", &["--port", "80"], "deny", "ingress"),
        ("x/a", "vm1", &["--port", "443"], "allow", "ingress"),
        (
            "10.1.0.1",
            "10.1.0.2",
            &["--port", "80"],
            "allow",
            "ingress",
        ),
    ];
    for (from, to, extra, verdict, side) in cases {
        let v = flow(from, to, extra);
        assert_eq!(v["verdict"], *verdict, "{from} -> {to} {extra:?}: {v:#}");
        assert_eq!(v["decidedBy"], *side, "{from} -> {to} {extra:?}");
    }
}

#[test]
fn icmp_defaults_to_echo_request_and_picks_the_family() {
    let v = flow("x/a", "x/b", &["--protocol", "ICMP"]);
    assert_eq!(v["port"], 8);
    let v = flow("x/a", "n1", &["--protocol", "ICMPv6"]);
    assert_eq!(v["port"], 128);
    assert_eq!(v["source"], "fd00:1::1", "ICMPv6 travels over IPv6");
    assert_eq!(v["destination"], "fd00:16::1");
}

#[test]
fn an_unmanaged_source_has_no_egress_side() {
    let v = flow("203.0.113.9", "x/b", &["--port", "80"]);
    assert!(v["egress"].is_null());
    assert_eq!(v["ingress"]["peerIdentity"], 2, "reserved:world");
}

#[test]
fn text_names_rule_modes_and_would_be() {
    let basic = fixture("basic");
    let r = run(&[
        "simulate", &basic, "--from", "x/a", "--to", "x/b", "--port", "80",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "x/a -> x/b  80/TCP: ALLOW (would be DENY under full enforcement)"
    );
    assert!(r
        .stdout
        .contains("x/a on n1 (visibility): allow, would be deny under full enforcement"));
    assert!(r
        .stdout
        .contains("x/b on n1 (full): allow; rule web-from-a of policy b-from-a (allow, id "));
    assert!(
        r.stderr.contains("skipping apps/v1 Deployment web"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_deny_still_exits_zero() {
    let basic = fixture("basic");
    let r = run(&[
        "simulate", &basic, "--from", "y/a", "--to", "x/a", "--port", "80",
    ]);
    assert_eq!(r.code, Some(0));
    assert!(
        r.stdout.starts_with("y/a -> x/a  80/TCP: DENY\n"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("decided by   the egress of y/a"),
        "{}",
        r.stdout
    );
}

fn through_service(to: &str, extra: &[&str]) -> support::Run {
    let dir = fixture("services");
    let args = [&["simulate", &dir, "--from", "prod/web", "--to", to], extra].concat();
    run(&args)
}

#[test]
fn through_a_service_each_backend_gets_its_own_verdict() {
    let v = through_service("service:prod/db", &["--port", "5432", "-o", "json"]).json();
    assert_eq!(v["service"], "prod/db");
    assert_eq!(v["verdict"], "mixed", "{v:#}");
    let backends = v["backends"].as_array().expect("backends");
    let got: Vec<(&str, &str, &str)> = backends
        .iter()
        .map(|b| {
            let field = |k: &str| b[k].as_str().unwrap_or("?");
            (
                field("to"),
                field("verdict"),
                b["decidedBy"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    // db-1 accepts (visibility); db-2's own ingress (full, no rule) refuses:
    // the egress rule naming the Service lets both out.
    assert_eq!(
        got,
        [
            ("prod/db-1", "allow", "ingress"),
            ("prod/db-2", "deny", "ingress")
        ]
    );
    assert_eq!(backends[0]["egress"]["rule"]["rule"], "to-db");
    // The rule's port is the backends' port.
    let v = through_service("service:prod/db", &["--port", "80", "-o", "json"]).json();
    assert_eq!(v["verdict"], "deny");
    assert_eq!(v["backends"][0]["decidedBy"], "egress");
    // A backend outside the cluster, in a labeled range.
    let v = through_service("service:prod/saas", &["--port", "5432", "-o", "json"]).json();
    assert_eq!(v["verdict"], "allow");
    assert_eq!(v["backends"][0]["destination"], "203.0.113.10");
}

#[test]
fn through_a_service_text_and_errors() {
    let r = through_service("service:prod/db", &["--port", "5432"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout.starts_with(
            "Service prod/db (2 backends, each judged as the packet kube-proxy sends it): MIXED\n\
             prod/web -> prod/db-1  5432/TCP: ALLOW (would be DENY under full enforcement)\n"
        ),
        "{}",
        r.stdout
    );
    through_service("service:prod/empty", &["--port", "5432"]).fails_with(
        "--to service:prod/empty: no EndpointSlice in the input lists a backend of Service prod/empty",
    );
    through_service("service:prod", &[])
        .fails_with("--to service:prod: a Service is written service:namespace/name");
    let dir = fixture("services");
    run(&[
        "simulate",
        &dir,
        "--from",
        "service:prod/db",
        "--to",
        "prod/web",
    ])
    .fails_with("a Service sends nothing; it is only a destination");
}
