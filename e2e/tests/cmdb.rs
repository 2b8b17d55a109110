//! `kubectl bulkhead import cmdb` against a real kube-apiserver: the dry run
//! shows the diff and writes nothing, the import writes LabelMappings with
//! provenance, re-importing the same file changes nothing (not even the
//! resourceVersion), a changed file updates and prunes, and a file with one
//! bad row fails naming its line and column and applies nothing.
//!
//! Needs the binaries from `make tools` (e2e/tools.sh); fails without them.

use std::path::Path;
use std::process::Command;

use bulkhead_e2e::binaries::ProjectBinaries;
use bulkhead_e2e::ControlPlane;

const ASSETS: &str = "ip,fqdn,application,environment,owner\n\
10.20.0.5,,payments,prod,team-a\n\
10.20.1.0/24,,payments,prod,team-a\n\
,mainframe-1.corp,ledger,prod,team-b\n";

fn import(cp: &ControlPlane, file: &Path, extra: &[&str]) -> (bool, String, String) {
    let cli = ProjectBinaries::locate()
        .unwrap_or_else(|e| panic!("building the project: {e}"))
        .cli();
    let out = Command::new(cli)
        .args(["import", "cmdb"])
        .arg(file)
        .args([
            "--map",
            "application=app",
            "--map",
            "environment=env",
            "--cidr-column",
            "ip",
            "--hostname-column",
            "fqdn",
            "--source",
            "servicenow",
        ])
        .args(extra)
        .env("KUBECONFIG", cp.admin_kubeconfig())
        .output()
        .expect("kubectl-bulkhead runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn mappings(cp: &ControlPlane) -> Vec<serde_json::Value> {
    let list = cp
        .kubectl()
        .json(&["get", "labelmappings", "-o", "json"])
        .unwrap_or_else(|e| panic!("{e}"));
    list["items"].as_array().cloned().unwrap_or_default()
}

fn versions(cp: &ControlPlane) -> Vec<(String, String)> {
    mappings(cp)
        .iter()
        .map(|m| {
            (
                m["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                m["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

#[test]
fn cmdb_import_dry_run_apply_reimport_and_bad_rows() {
    let cp = ControlPlane::start_temp().unwrap_or_else(|e| panic!("control plane: {e}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("assets.csv");
    std::fs::write(&file, ASSETS).expect("write");

    let (ok, out, err) = import(&cp, &file, &["--dry-run"]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("create labelmapping/cmdb-servicenow\n"),
        "{out}"
    );
    assert!(
        out.contains("+ cidrs 10.20.0.5/32,10.20.1.0/24 -> app=payments,env=prod"),
        "{out}"
    );
    assert!(
        out.contains("+ hostnames mainframe-1.corp -> app=ledger,env=prod"),
        "{out}"
    );
    assert!(mappings(&cp).is_empty(), "a dry run writes nothing");

    let (ok, out, err) = import(&cp, &file, &[]);
    assert!(ok, "{out}{err}");
    let all = mappings(&cp);
    assert_eq!(all.len(), 1);
    let m = &all[0];
    assert_eq!(
        m["metadata"]["labels"]["bulkhead.dev/cmdb-source"],
        "servicenow"
    );
    let at = m["metadata"]["annotations"]["bulkhead.dev/cmdb-imported-at"]
        .as_str()
        .expect("import time");
    assert!(at.parse::<jiff::Timestamp>().is_ok(), "{at}");
    let rules = m["spec"]["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), 2, "{m:#}");
    assert_eq!(rules[0]["labels"]["app"], "payments");
    assert_eq!(rules[0]["name"], "cmdb servicenow lines 2,3");

    let before = versions(&cp);
    let (ok, out, err) = import(&cp, &file, &[]);
    assert!(ok, "{err}");
    assert_eq!(out, "unchanged labelmapping/cmdb-servicenow\n");
    assert_eq!(versions(&cp), before, "a re-import writes nothing");

    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, format!("{ASSETS}10.20.2.999,,payments,prod,team-a\n")).expect("write");
    let (ok, _, err) = import(&cp, &bad, &[]);
    assert!(!ok);
    assert!(
        err.contains("bad.csv:5:1: column \"ip\": \"10.20.2.999\" is not an IP address or CIDR"),
        "{err}"
    );
    assert_eq!(versions(&cp), before, "a bad row applies nothing");

    let changed = dir.path().join("assets-v2.csv");
    std::fs::write(&changed, ASSETS.replace("10.20.0.5,", "10.20.0.6,")).expect("write");
    let (ok, out, err) = import(&cp, &changed, &[]);
    assert!(ok, "{err}");
    assert!(out.contains("- cidrs 10.20.0.5/32,10.20.1.0/24"), "{out}");
    assert!(out.contains("+ cidrs 10.20.0.6/32,10.20.1.0/24"), "{out}");
    let after = mappings(&cp);
    assert_eq!(
        after[0]["spec"]["rules"][0]["match"]["cidrs"][0],
        "10.20.0.6/32"
    );
}
