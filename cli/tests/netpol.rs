//! NetworkPolicies in the input: `simulate` enforces them (and says so),
//! `compile` and `labels` only with `--network-policies`.

mod support;

use support::{fixture, run};

fn simulate(from: &str, to: &str, port: &str) -> support::Run {
    let dir = fixture("netpol");
    run(&[
        "simulate", &dir, "--from", from, "--to", to, "--port", port, "-o", "json",
    ])
}

#[test]
fn simulate_enforces_network_policies_and_says_so() {
    let r = simulate("shop/web", "shop/db", "5432");
    let v = r.json();
    assert_eq!(v["verdict"], "allow");
    assert_eq!(v["ingress"]["rule"]["policy"], "networkpolicy:shop/db");
    assert_eq!(v["ingress"]["rule"]["rule"], "ingress[0]");
    assert_eq!(v["ingress"]["mode"], "selective");
    assert!(
        r.stderr.contains(
            "note: the input has 2 NetworkPolicies; enforcing them too, as --network-policies would"
        ),
        "{}",
        r.stderr
    );
}

#[test]
fn verdicts_follow_network_policy_semantics() {
    // (from, to, port, verdict, deciding rule of the destination's ingress)
    let cases = [
        ("shop/web", "shop/db", "5432", "allow", "ingress[0]"),
        ("shop/web", "shop/db", "5433", "deny", "ingress (isolation)"),
        (
            "ops/batch",
            "shop/db",
            "5432",
            "deny",
            "ingress (isolation)",
        ),
        ("ops/batch", "shop/web", "8080", "allow", "ingress[0]"),
        ("ops/batch", "shop/web", "80", "deny", "ingress (isolation)"),
        ("n1", "shop/db", "9187", "allow", "ingress (own node)"),
        ("203.0.113.9", "shop/web", "8080", "allow", "ingress[0]"),
    ];
    for (from, to, port, verdict, rule) in cases {
        let v = simulate(from, to, port).json();
        assert_eq!(v["verdict"], verdict, "{from} -> {to}:{port}: {v:#}");
        assert_eq!(v["ingress"]["rule"]["rule"], rule, "{from} -> {to}:{port}");
    }
    let v = simulate("shop/db", "ops/batch", "80").json();
    assert_eq!(v["verdict"], "allow", "batch is selected by no policy");
    assert!(v["ingress"]["rule"].is_null());
}

#[test]
fn the_matrix_uses_the_named_ports_numbers() {
    let dir = fixture("netpol");
    let r = run(&["simulate", &dir, "--matrix"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout.contains("5432/TCP  (rows: from, columns: to)"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("8080/TCP  (rows: from, columns: to)"),
        "{}",
        r.stdout
    );
}

#[test]
fn compile_and_labels_need_the_flag() {
    let dir = fixture("netpol");
    let out = support::scratch("netpol-compile");
    let out = out.to_str().expect("utf-8 path");
    let r = run(&["compile", &dir, "--out", out]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("note: the input has 2 NetworkPolicies, ignored without --network-policies"),
        "{}",
        r.stderr
    );
    assert!(!r.stdout.contains("networkpolicy:"), "{}", r.stdout);
    let r = run(&["compile", &dir, "--out", out, "--network-policies"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout
            .contains("networkpolicy:shop/db: mode selective, 1 endpoint in scope"),
        "{}",
        r.stdout
    );
    assert!(!r.stderr.contains("note:"), "{}", r.stderr);

    let r = run(&["labels", &dir, "--network-policies", "-o", "json"]);
    let v = r.json();
    let unlabeled = v["unlabeled"].as_array().expect("list");
    assert!(
        unlabeled.iter().any(|e| e == "shop/db"),
        "pods without segmentation labels stay in the queue: {v:#}"
    );
}

#[test]
fn bad_network_policies_name_file_line_and_field() {
    let dir = fixture("netpol-bad");
    let r = run(&["simulate", &dir, "--from", "shop/web", "--to", "shop/db"]);
    r.fails_with(
        "netpol-bad/policies.yaml:8:7: NetworkPolicy shop/typo: spec.ingress[0].from[0].namespaceSelecter: unknown field",
    );
    r.fails_with(
        "NetworkPolicy shop/wide: spec.egress[0].to[0].ipBlock.except[0]: must be a strict subset of cidr 10.0.0.0/8",
    );
}
