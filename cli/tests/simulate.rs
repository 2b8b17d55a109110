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
