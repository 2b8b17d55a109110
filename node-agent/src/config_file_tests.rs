use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::{try_parse, ConfigFileError};
use crate::Args;

fn parse_with(yaml: &str, cli: &[&str]) -> Result<Args, ConfigFileError> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("agent.yaml");
    std::fs::write(&path, yaml).expect("writing the config file");
    let mut argv: Vec<OsString> = vec!["bulkhead-agent".into(), "--config".into(), path.into()];
    argv.extend(cli.iter().map(OsString::from));
    try_parse(argv)
}

fn error_of(yaml: &str) -> String {
    match parse_with(yaml, &[]) {
        Ok(args) => panic!("{yaml:?} was accepted: {args:?}"),
        Err(e) => e.to_string(),
    }
}

/// The file the .deb installs as /etc/bulkhead/agent.yaml is one the agent reads.
#[test]
fn the_packaged_config_file_is_read() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/agent.yaml");
    let argv: Vec<OsString> = vec!["bulkhead-agent".into(), "--config".into(), shipped.into()];
    let args: Args = try_parse(argv).expect("the packaged agent.yaml parses");
    assert_eq!(
        args.rule_map,
        Some(PathBuf::from("/etc/bulkhead/rule-map.yaml"))
    );
    assert_eq!(
        args.identities,
        [PathBuf::from("/etc/bulkhead/identities.yaml")]
    );
    assert_eq!(args.spool_dir, PathBuf::from("/var/lib/bulkhead/spool"));
    assert_eq!(
        args.status_file,
        Some(PathBuf::from("/run/bulkhead/status.json"))
    );
    assert!(args.node_name.is_none());
}

#[test]
fn keys_set_the_flags_of_the_same_name() {
    let args = parse_with(
        "node-name: web-1\n\
         host-interface: [eth0, eth1]\n\
         endpoint-prefix: lxc\n\
         flow-interval-ms: 250\n\
         flow-log: '-'\n\
         log-json: true\n\
         detach-on-exit: false\n",
        &[],
    )
    .expect("valid file");
    assert_eq!(args.node_name.as_deref(), Some("web-1"));
    assert_eq!(args.host_interfaces, ["eth0", "eth1"]);
    // A list given in the file replaces the flag's default list.
    assert_eq!(args.endpoint_prefixes, ["lxc"]);
    assert_eq!(args.flow_interval_ms, 250);
    assert_eq!(args.flow_log, Some(PathBuf::from("-")));
    assert!(args.log_json);
    assert!(!args.detach_on_exit);
    // What the file leaves out keeps the flag's default.
    assert_eq!(args.poll_interval_ms, 500);
}

#[test]
fn the_command_line_overrides_the_file() {
    let args = parse_with(
        "flow-interval-ms: 250\nhost-interface: [eth0]\n",
        &["--flow-interval-ms", "900", "--host-interface", "eth9"],
    )
    .expect("valid file");
    assert_eq!(args.flow_interval_ms, 900);
    assert_eq!(args.host_interfaces, ["eth0", "eth9"]);
}

#[test]
fn config_equals_form_and_empty_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("empty.yaml");
    std::fs::write(&path, "# nothing set\n").expect("write");
    let arg = format!("--config={}", path.display());
    let args: Args = try_parse(["bulkhead-agent", &arg].map(OsString::from)).expect("empty file");
    assert_eq!(args.flow_interval_ms, 1000);
}

#[test]
fn bad_files_are_refused_naming_the_key() {
    let table: &[(&str, &[&str])] = &[
        (
            "host-interfaces: [eth0]\n",
            &["unknown key \"host-interfaces\"", "host-interface,"],
        ),
        ("node_name: web-1\n", &["unknown key \"node_name\""]),
        ("config: /etc/other.yaml\n", &["unknown key \"config\""]),
        ("version: true\n", &["unknown key \"version\""]),
        (
            "log-json: yes please\n",
            &["key \"log-json\": takes true or false"],
        ),
        (
            "node-name: [a, b]\n",
            &["key \"node-name\": takes one value, not a list"],
        ),
        (
            "host-interface: [{name: eth0}]\n",
            &["key \"host-interface\": takes a plain value"],
        ),
        ("flow-log:\n", &["key \"flow-log\": has no value"]),
        (
            "- node-name\n",
            &["the top level must map flag names to values"],
        ),
        ("node-name: [\n", &["is not YAML"]),
        (
            "flow-interval-ms: soon\n",
            &["invalid value 'soon'", "--flow-interval-ms"],
        ),
    ];
    for (yaml, wants) in table {
        let error = error_of(yaml);
        for want in *wants {
            assert!(error.contains(want), "{yaml:?}: {error:?} lacks {want:?}");
        }
    }
}

#[test]
fn a_missing_file_is_named() {
    let argv = ["bulkhead-agent", "--config", "/nonexistent/agent.yaml"].map(OsString::from);
    let error = try_parse::<Args>(argv).expect_err("missing file");
    assert!(
        error.to_string().contains("/nonexistent/agent.yaml"),
        "{error}"
    );
}
