//! Shared by the lab tests: they need root (network namespaces, eBPF) and
//! the control-plane binaries, and fail, never skip, without them.
#![allow(dead_code)]

pub mod workloads;

use std::time::Duration;

use bulkhead_e2e::lab::wait_until;
use bulkhead_e2e::{Lab, LabSpec};

/// How long the operator (and agents) get to react to one change.
pub const SETTLE: Duration = Duration::from_secs(30);

pub fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2));
    assert_eq!(
        euid,
        Some("0"),
        "privileged test: the lab creates network namespaces, a bridge and BPF mounts; run as root"
    );
}

/// Starts a lab or fails the test with why.
pub fn start(spec: LabSpec) -> Lab {
    require_root();
    Lab::start(spec).unwrap_or_else(|e| panic!("starting the lab: {e}"))
}

/// The value, or a test failure that says what was being done.
pub fn ok<T, E: std::fmt::Display>(result: Result<T, E>, what: &str) -> T {
    result.unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Polls `check` until it returns `Some` (within `SETTLE`), or fails the test.
pub fn eventually<T>(what: &str, check: impl FnMut() -> bulkhead_e2e::Result<Option<T>>) -> T {
    ok(wait_until(what, SETTLE, check), "waiting")
}

use std::collections::BTreeMap;

use bulkhead_api::{IdentityMap, NodeRuleMap, NodeRuleMapSpec};
use bulkhead_e2e::observe::{self, Directory};
use serde_json::{json, Value};

/// A rule map with every identity number replaced by the labels it stands
/// for and rule ids left out: two compilations of the same cluster agree
/// on this even when they numbered identities in another order.
pub fn canonical(spec: &NodeRuleMapSpec, dir: &Directory) -> Value {
    let endpoint = |e: &bulkhead_api::rule_map::LocalEndpoint| json!({"name": e.name, "addresses": e.addresses, "identity": dir.describe(e.identity), "mode": e.mode});
    let ids = |ids: &[u32]| {
        let mut v: Vec<String> = ids.iter().map(|i| dir.describe(*i)).collect();
        v.sort();
        v
    };
    let mut endpoints: Vec<Value> = spec.endpoints.iter().map(endpoint).collect();
    endpoints.sort_by_key(|e| e["name"].as_str().map(str::to_owned));
    let mut rules: Vec<Value> = spec
        .rules
        .iter()
        .map(|r| {
            json!({"policy": r.policy, "rule": r.rule, "direction": r.direction, "action": r.action,
                   "subjects": ids(&r.subjects), "anyPeer": r.any_peer, "peers": ids(&r.peers),
                   "ports": r.ports})
        })
        .collect();
    rules.sort_by_key(|r| r.to_string());
    json!({"host": endpoint(&spec.host), "endpoints": endpoints, "rules": rules,
           "failsafePorts": spec.failsafe_ports, "nodeKind": spec.node_kind})
}

/// The shards as (labels of every identity, prefix → labels).
pub fn canonical_shards(dir: &Directory) -> Value {
    let mut identities: Vec<String> = dir.labels.keys().map(|id| dir.describe(*id)).collect();
    identities.sort();
    let prefixes: BTreeMap<&String, String> = dir
        .prefixes
        .iter()
        .map(|(p, id)| (p, dir.describe(*id)))
        .collect();
    json!({"identities": identities, "prefixes": prefixes})
}

/// The operator's published rule maps and shards, canonical.
pub fn published(lab: &Lab) -> bulkhead_e2e::Result<Value> {
    let kubectl = lab.kubectl();
    let shards = observe::identity_maps(&kubectl)?;
    let dir = Directory::from_shards(shards.values());
    let maps: BTreeMap<String, Value> = observe::rule_maps(&kubectl)?
        .iter()
        .map(|(n, m)| (n.clone(), canonical(&m.spec, &dir)))
        .collect();
    Ok(json!({"ruleMaps": maps, "shards": canonical_shards(&dir)}))
}

/// What `kubectl-bulkhead compile` makes of the objects in the API server
/// now, canonical: the offline compiler and the operator must agree.
pub fn compiled_offline(lab: &Lab) -> bulkhead_e2e::Result<Value> {
    let input = tempfile::tempdir().map_err(|e| bulkhead_e2e::Error::Io {
        action: "create",
        path: std::env::temp_dir(),
        source: e,
    })?;
    let objects = lab.kubectl().run(&[
        "get",
        "namespaces,nodes,pods,externalnodes,labelmappings,segmentationpolicies",
        "-A",
        "-o",
        "yaml",
    ])?;
    let snapshot = input.path().join("in");
    std::fs::create_dir_all(&snapshot).map_err(|e| bulkhead_e2e::Error::Io {
        action: "create",
        path: snapshot.clone(),
        source: e,
    })?;
    let io = |path: std::path::PathBuf| {
        move |e| bulkhead_e2e::Error::Io {
            action: "write",
            path,
            source: e,
        }
    };
    std::fs::write(snapshot.join("cluster.yaml"), objects)
        .map_err(io(snapshot.join("cluster.yaml")))?;
    let out = input.path().join("out");
    let cli = lab.project_binaries().cli();
    let mut args = vec![
        "compile".to_string(),
        snapshot.to_string_lossy().into_owned(),
        "--out".into(),
        out.to_string_lossy().into_owned(),
        "-o".into(),
        "json".into(),
    ];
    args.extend(
        bulkhead_e2e::lab::failsafe_ports()
            .iter()
            .map(|p| format!("--failsafe-port={p}")),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    bulkhead_e2e::netns::run(&cli.to_string_lossy(), &args)?;
    let mut maps = Vec::new();
    let mut shards = Vec::new();
    for entry in std::fs::read_dir(&out).map_err(io(out.clone()))? {
        let path = entry.map_err(io(out.clone()))?.path();
        let text = std::fs::read_to_string(&path).map_err(io(path.clone()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parse_error = |e: serde_json::Error| bulkhead_e2e::Error::Unexpected {
            what: path.display().to_string(),
            problem: e.to_string(),
        };
        if name.starts_with("noderulemap-") {
            maps.push(serde_json::from_str::<NodeRuleMap>(&text).map_err(parse_error)?);
        } else if name.starts_with("identitymap-") {
            shards.push(serde_json::from_str::<IdentityMap>(&text).map_err(parse_error)?);
        }
    }
    let dir = Directory::from_shards(shards.iter());
    let maps: BTreeMap<String, Value> = maps
        .iter()
        .map(|m| {
            (
                m.metadata.name.clone().unwrap_or_default(),
                canonical(&m.spec, &dir),
            )
        })
        .collect();
    Ok(json!({"ruleMaps": maps, "shards": canonical_shards(&dir)}))
}

/// Waits until the operator's output equals the offline compiler's on the
/// same objects, or fails with both.
pub fn assert_operator_agrees_with_offline_compile(lab: &Lab, when: &str) {
    let mut last = (Value::Null, Value::Null);
    let agreed = wait_until(when, SETTLE, || {
        let (online, offline) = (published(lab)?, compiled_offline(lab)?);
        let same = online == offline;
        last = (online, offline);
        Ok(same.then_some(()))
    });
    if agreed.is_err() {
        panic!(
            "{when}: the operator's rule maps and shards differ from `kubectl-bulkhead compile` of the same objects\n\
             operator: {:#}\noffline:  {:#}",
            last.0, last.1
        );
    }
}

/// The objects in the API server now, as one manifest file in a fresh
/// directory (what the offline tools read).
pub fn snapshot(lab: &Lab) -> bulkhead_e2e::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir().map_err(|e| bulkhead_e2e::Error::Io {
        action: "create",
        path: std::env::temp_dir(),
        source: e,
    })?;
    let objects = lab.kubectl().run(&[
        "get",
        "namespaces,nodes,pods,externalnodes,labelmappings,segmentationpolicies",
        "-A",
        "-o",
        "yaml",
    ])?;
    let path = dir.path().join("cluster.yaml");
    std::fs::write(&path, objects).map_err(|e| bulkhead_e2e::Error::Io {
        action: "write",
        path,
        source: e,
    })?;
    Ok(dir)
}

/// `kubectl-bulkhead simulate --matrix` of the objects in the API server:
/// (from, to) → whether the packet passes now.
pub fn simulated_matrix(
    lab: &Lab,
    proto: bulkhead_e2e::Proto,
    port: u16,
) -> bulkhead_e2e::Result<BTreeMap<(String, String), bool>> {
    let input = snapshot(lab)?;
    let cli = lab.project_binaries().cli();
    let out = bulkhead_e2e::netns::run(
        &cli.to_string_lossy(),
        &[
            "simulate",
            &input.path().to_string_lossy(),
            "--matrix",
            "--port",
            &port.to_string(),
            "--protocol",
            proto.name(),
            "-o",
            "json",
        ],
    )?;
    let json: Value = serde_json::from_str(&out).map_err(|e| bulkhead_e2e::Error::Unexpected {
        what: "kubectl-bulkhead simulate -o json".into(),
        problem: e.to_string(),
    })?;
    Ok(json["cells"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let key = (
                c["from"].as_str().unwrap_or_default().to_owned(),
                c["to"].as_str().unwrap_or_default().to_owned(),
            );
            (key, c["verdict"] == "allow")
        })
        .collect())
}

/// Sends SIGCONT to the paused API server when dropped, so that a failed
/// assertion does not leave the lab frozen.
pub struct Paused(i32);

impl Paused {
    pub fn api_server(lab: &Lab) -> Paused {
        let recorded = ok(
            bulkhead_e2e::process::recorded(lab.plane().state()),
            "the lab's processes",
        );
        let apiserver = recorded
            .iter()
            .find(|p| p.name == "kube-apiserver" && p.is_running())
            .unwrap_or_else(|| panic!("no running kube-apiserver in {recorded:?}"));
        signal(apiserver.pid, "-STOP");
        Paused(apiserver.pid)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        signal(self.0, "-CONT");
    }
}

pub fn signal(pid: i32, which: &str) {
    let status = std::process::Command::new("kill")
        .args([which, &pid.to_string()])
        .status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "kill {which} {pid} failed"
    );
}
