//! The fixture format: one YAML file per case (see `README.md` next to
//! this file). Plain data, so that a lab runner can replay the same files
//! with real pods and packets.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use bulkhead_api::policy::Protocol;
use serde::Deserialize;
use serde_yaml::Value;

/// One case.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Case {
    /// Where the case comes from.
    pub source: Source,
    /// The pods that exist, as `namespace/pod` (namespaces are x, y, z).
    pub pods: Vec<String>,
    /// What every pod serves: one container per port and protocol.
    pub servers: Servers,
    /// Give pods segmentation labels too (a LabelMapping copying `pod` and
    /// `ns`); `both` runs the case with and without them.
    #[serde(default)]
    pub segmentation_labels: SegmentationLabels,
    /// The steps, in order; each changes the cluster, then probes it.
    pub steps: Vec<Step>,
}

/// Where a case comes from.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Source {
    /// `upstream` (the Kubernetes e2e suite) or `bulkhead` (our own).
    pub suite: String,
    /// For upstream cases, the `Describe`/`Context` the test sits in.
    #[serde(default)]
    pub context: Option<String>,
    /// For upstream cases, the title of the `It`; for ours, what it shows.
    pub title: String,
}

/// The containers of every pod.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Servers {
    /// Protocols served.
    pub protocols: Vec<Protocol>,
    /// Ports served, on every protocol; each is named `serve-<port>-<protocol>`.
    pub ports: Vec<u16>,
}

/// Whether pods carry segmentation labels.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum SegmentationLabels {
    /// Run the case both ways; nothing may change.
    #[default]
    Both,
    /// Only with them (cases that combine SegmentationPolicies).
    Yes,
    /// Only without them.
    No,
}

/// One step.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Step {
    /// What the step does, for messages.
    #[serde(default)]
    pub title: Option<String>,
    /// Changes to the cluster, in order.
    #[serde(default, with = "serde_yaml::with::singleton_map_recursive")]
    pub actions: Vec<Action>,
    /// Truth tables to check afterwards.
    #[serde(default)]
    pub probes: Vec<Probe>,
    /// Single flows to check besides the tables.
    #[serde(default)]
    pub flows: Vec<Flow>,
}

/// A change to the cluster.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum Action {
    /// Create or replace a NetworkPolicy or SegmentationPolicy (a manifest).
    Apply(Value),
    /// Delete a NetworkPolicy, `namespace/name`.
    DeleteNetworkPolicy(String),
    /// Delete every NetworkPolicy.
    DeleteAllNetworkPolicies(bool),
    /// Delete a SegmentationPolicy by name.
    DeleteSegmentationPolicy(String),
    /// Add (or overwrite) labels of a namespace.
    AddNamespaceLabels {
        namespace: String,
        labels: BTreeMap<String, String>,
    },
    /// Add (or overwrite) labels of a pod, `namespace/pod`.
    AddPodLabels {
        pod: String,
        labels: BTreeMap<String, String>,
    },
}

/// Who reaches whom with one protocol and port: a default for every pair
/// of distinct pods, then exceptions, later ones winning.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    /// The protocol.
    pub protocol: Protocol,
    /// The destination port.
    pub port: u16,
    /// The default of every cell.
    pub reachable: bool,
    /// Cells that differ.
    #[serde(default)]
    pub except: Vec<Exception>,
}

/// Cells of a probe: `from` and `to` are `*`, `x/*`, `*/a` or `x/a`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exception {
    pub from: String,
    pub to: String,
    pub reachable: bool,
}

/// One flow: ends are `namespace/pod`, a node (`n1`, `n2`, `n3`),
/// `node-of:namespace/pod` (the node the pod runs on) or an IP address.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flow {
    pub from: String,
    pub to: String,
    pub protocol: Protocol,
    pub port: u16,
    pub reachable: bool,
    /// `v4` or `v6`: check the flow only when pods have that family
    /// (for flows to fixed addresses).
    #[serde(default)]
    pub family: Option<String>,
}

impl Source {
    /// `upstream: <context> / <title>`, for messages.
    pub fn describe(&self) -> String {
        match &self.context {
            Some(context) => format!("{}: {context} / {}", self.suite, self.title),
            None => format!("{}: {}", self.suite, self.title),
        }
    }
}

impl Exception {
    pub fn covers(&self, from: &str, to: &str) -> bool {
        pattern_matches(&self.from, from) && pattern_matches(&self.to, to)
    }
}

impl Probe {
    /// What the probe expects of `from` → `to`.
    pub fn expected(&self, from: &str, to: &str) -> bool {
        self.except
            .iter()
            .rev()
            .find(|e| e.covers(from, to))
            .map_or(self.reachable, |e| e.reachable)
    }
}

fn pattern_matches(pattern: &str, pod: &str) -> bool {
    let (ns, name) = pod.split_once('/').unwrap_or((pod, ""));
    let (pns, pname) = pattern.split_once('/').unwrap_or((pattern, "*"));
    (pns == "*" || pns == ns) && (pname == "*" || pname == name)
}

/// Every `*.yaml` in `dir`, sorted, parsed.
pub fn load_dir(dir: &Path) -> Vec<(PathBuf, Case)> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = fs::read_to_string(&path).expect("readable case");
            let case: Case =
                serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, case)
        })
        .collect()
}

/// Replaces `${host:x/b}` (the pod's address as a /32 or /128) and
/// `${wide:x/b}` (the /4 around it) in every string of `value`.
pub fn substitute(value: &mut Value, address_of: &dyn Fn(&str) -> std::net::IpAddr) {
    match value {
        Value::String(s) => {
            while let Some(start) = s.find("${") {
                let end = start + s[start..].find('}').expect("placeholder closes");
                let (what, pod) = s[start + 2..end]
                    .split_once(':')
                    .expect("placeholder is ${kind:pod}");
                let address = address_of(pod);
                let host_len = if address.is_ipv4() { 32 } else { 128 };
                let text = match what {
                    "host" => format!("{address}/{host_len}"),
                    "wide" => ipnet::IpNet::new(address, 4)
                        .expect("/4 fits")
                        .trunc()
                        .to_string(),
                    other => panic!("unknown placeholder {other:?}"),
                };
                s.replace_range(start..=end, &text);
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(|v| substitute(v, address_of)),
        Value::Mapping(map) => map.values_mut().for_each(|v| substitute(v, address_of)),
        _ => {}
    }
}
