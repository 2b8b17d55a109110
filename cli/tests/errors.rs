//! Bad input and bad references: each error names the file, line, object and field.

mod support;

use support::{fixture, run};

fn simulate(dir: &str, from: &str, to: &str) -> support::Run {
    run(&[
        "simulate",
        &fixture(dir),
        "--from",
        from,
        "--to",
        to,
        "--port",
        "80",
    ])
}

#[test]
fn malformed_yaml_names_file_and_line() {
    simulate("bad-yaml", "x/a", "x/b")
        .fails_with("bad-yaml/pods.yaml:7:5: invalid YAML: did not find expected ',' or '}'");
}

#[test]
fn unknown_ends_are_named() {
    simulate("basic", "x/nope", "x/b")
        .fails_with("--from x/nope: no pod x/nope in the input (pods in namespace x: a, b)");
    simulate("basic", "x/a", "db1")
        .fails_with("--to db1: no Node or ExternalNode named \"db1\" in the input");
    simulate("basic", "x/a", "n2")
        .fails_with("--to n2: node n2 has no address: it is only named by pods' spec.nodeName");
}

#[test]
fn an_invalid_cidr_names_object_and_field() {
    simulate("bad-cidr", "x/a", "x/b").fails_with(
        "bad-cidr/policy.yaml:12:7: SegmentationPolicy to-partners: spec.egress[0].peers[1].cidr: \
         cidr must be a valid IPv4 or IPv6 CIDR such as 10.0.0.0/8 or fd00::/64 (got \"198.51.100.0/33\")",
    );
}

#[test]
fn unknown_fields_are_rejected_like_strict_kubectl() {
    simulate("unknown-field", "x/a", "x/b").fails_with(
        "unknown-field/policy.yaml:9:3: SegmentationPolicy typo: spec.ingres: unknown field",
    );
}

#[test]
fn duplicates_name_both_places() {
    let r = simulate("duplicate", "x/a", "x/b");
    r.fails_with("Namespace x is defined twice: at ");
    r.fails_with("duplicate/one.yaml:1:1 and at ");
    r.fails_with("duplicate/two.yaml:6:1");
}

#[test]
fn wrong_types_in_list_items_name_the_field() {
    simulate("bad-type", "x/a", "x/b").fails_with("bad-type/pods.yaml:8:15: Pod x/a: spec.nodeName: invalid type: sequence, expected a string");
}

#[test]
fn missing_paths_and_empty_directories() {
    simulate("no-such-dir", "x/a", "x/b").fails_with("no-such-dir: No such file or directory");
    let empty = support::scratch("empty");
    let r = run(&["simulate", empty.to_str().unwrap_or_default(), "--matrix"]);
    r.fails_with("no *.yaml, *.yml or *.json files found");
}

#[test]
fn usage_errors() {
    let basic = fixture("basic");
    let r = run(&[
        "simulate",
        &basic,
        "--from",
        "x/a",
        "--to",
        "x/b",
        "--protocol",
        "UDP",
    ]);
    r.fails_with("--port is required for UDP");
    let r = run(&["simulate", &basic, "--from", "x/a"]);
    assert_eq!(r.code, Some(2), "clap's usage error: {}", r.stderr);
}
