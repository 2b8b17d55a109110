//! `bulkhead-cni`: a chained CNI plugin that guards a pod's veth the moment
//! it exists, before the agent's next interface poll and before the pod's
//! endpoint reaches the rule map.
//!
//! ```text
//!  runtime ─ADD─► main plugin (veth, addresses) ─prevResult─► bulkhead-cni
//!     bulkhead-cni: host-side veth (prevResult, endpoint prefixes)
//!                   ─► bh_guarded[ifindex] = 1
//!                   ─► <pin dir>/progs/bh_{from,to}_endpoint attached (TCX),
//!                      links pinned at <pin dir>/links/ (the agent adopts them)
//!                   ─► prevResult on stdout
//!  no pinned programs (agent never ran): ADD fails, the sandbox is torn down
//! ```
//!
//! This module parses what the runtime hands over (pure, unit-tested);
//! `plugin.rs` does the I/O.

pub mod plugin;

use serde::Deserialize;
use serde_json::Value;

/// CNI versions whose results this plugin passes through (all carry
/// `interfaces` with `sandbox`).
pub const SUPPORTED_VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The CNI spec's well-known error codes used here.
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const CONTAINER_UNKNOWN: u32 = 3;
    pub const INVALID_ENVIRONMENT: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODE_FAILURE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const PLUGIN_NOT_AVAILABLE: u32 = 50;
}

/// A CNI error result: printed on stdout, with a non-zero exit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct CniError {
    pub code: u32,
    pub msg: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
        }
    }

    /// The spec's error document.
    pub fn to_json(&self, cni_version: &str) -> Value {
        serde_json::json!({
            "cniVersion": cni_version,
            "code": self.code,
            "msg": self.msg,
        })
    }
}

/// The network configuration on stdin: ours and the chain's.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    pub cni_version: String,
    #[serde(default)]
    pub name: String,
    /// Where bpffs is mounted (the agent's `--bpffs`).
    #[serde(default = "default_bpffs")]
    pub bpffs: std::path::PathBuf,
    /// The directory under bpffs (the agent's `--pin-name`).
    #[serde(default = "default_pin_name")]
    pub pin_name: String,
    /// Name prefixes of the host side of pod veths (the agent's
    /// `--endpoint-prefix`): only an interface the agent would attach to
    /// is attached, so the agent adopts what this plugin leaves.
    #[serde(default = "default_prefixes")]
    pub endpoint_prefixes: Vec<String>,
    #[serde(default)]
    pub prev_result: Option<Value>,
}

fn default_bpffs() -> std::path::PathBuf {
    std::path::PathBuf::from("/sys/fs/bpf")
}
fn default_pin_name() -> String {
    "bulkhead".to_string()
}
fn default_prefixes() -> Vec<String> {
    ["veth", "lxc", "cali"].map(String::from).to_vec()
}

impl NetConf {
    pub fn parse(stdin: &[u8]) -> Result<Self, CniError> {
        let conf: NetConf = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                code::DECODE_FAILURE,
                format!("network configuration on stdin: {e}"),
            )
        })?;
        if !SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()) {
            return Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!(
                    "cniVersion {:?} is not supported (supported: {})",
                    conf.cni_version,
                    SUPPORTED_VERSIONS.join(", ")
                ),
            ));
        }
        if conf.endpoint_prefixes.iter().any(String::is_empty) {
            return Err(CniError::new(
                code::INVALID_CONFIG,
                "endpointPrefixes: an empty prefix would match every interface",
            ));
        }
        Ok(conf)
    }

    /// The layout's pin directory, as the agent's `LoadOptions::pin_dir`.
    pub fn pin_dir(&self) -> std::path::PathBuf {
        crate::loader::LoadOptions {
            bpffs: self.bpffs.clone(),
            pin_name: self.pin_name.clone(),
            ..Default::default()
        }
        .pin_dir()
    }
}

/// The CNI_* environment of one call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CniEnv {
    pub command: String,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
}

impl CniEnv {
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Self {
        let var = |k: &str| get(k).unwrap_or_default();
        CniEnv {
            command: var("CNI_COMMAND"),
            container_id: var("CNI_CONTAINERID"),
            netns: var("CNI_NETNS"),
            ifname: var("CNI_IFNAME"),
        }
    }

    /// ADD and CHECK need the container and its interface.
    pub fn require_container(&self) -> Result<(), CniError> {
        for (name, value) in [
            ("CNI_CONTAINERID", &self.container_id),
            ("CNI_IFNAME", &self.ifname),
        ] {
            if value.is_empty() {
                return Err(CniError::new(
                    code::INVALID_ENVIRONMENT,
                    format!("{name} is not set"),
                ));
            }
        }
        Ok(())
    }
}

/// The host side of the pod's interface in a previous result: the
/// interfaces with no `sandbox` (the host's) whose name has one of
/// `prefixes` (a bridge the main plugin also reports has not).
pub fn host_interface(
    prev_result: &Value,
    ifname: &str,
    prefixes: &[String],
) -> Result<String, CniError> {
    let interfaces = prev_result
        .get("interfaces")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            CniError::new(
                code::INVALID_CONFIG,
                "prevResult has no interfaces: chain bulkhead-cni after the plugin that creates the pod's veth",
            )
        })?;
    let mut host = Vec::new();
    let mut names = Vec::new();
    for i in interfaces {
        let Some(name) = i.get("name").and_then(Value::as_str) else {
            continue;
        };
        names.push(name.to_string());
        let sandbox = i.get("sandbox").and_then(Value::as_str).unwrap_or("");
        if sandbox.is_empty() && prefixes.iter().any(|p| name.starts_with(p.as_str())) {
            host.push(name.to_string());
        }
    }
    match host.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(CniError::new(
            code::INVALID_CONFIG,
            format!(
                "prevResult names no host-side interface of {ifname} starting with {prefixes:?} (interfaces: {names:?}); set endpointPrefixes as the agent's --endpoint-prefix"
            ),
        )),
        many => Err(CniError::new(
            code::INVALID_CONFIG,
            format!("prevResult names several host-side interfaces starting with {prefixes:?}: {many:?}"),
        )),
    }
}

/// What ADD prints: the previous result, in the configuration's version.
pub fn pass_through(conf: &NetConf) -> Result<Value, CniError> {
    let mut result = conf.prev_result.clone().ok_or_else(|| {
        CniError::new(
            code::INVALID_CONFIG,
            "no prevResult: bulkhead-cni is a chained plugin, listed after the main plugin",
        )
    })?;
    if let Some(obj) = result.as_object_mut() {
        obj.insert("cniVersion".into(), conf.cni_version.clone().into());
    }
    Ok(result)
}

/// What VERSION prints.
pub fn version_info() -> Value {
    serde_json::json!({
        "cniVersion": "1.1.0",
        "supportedVersions": SUPPORTED_VERSIONS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(json: &str) -> Result<NetConf, CniError> {
        NetConf::parse(json.as_bytes())
    }

    const PREV: &str = r#"{"cniVersion":"1.0.0","interfaces":[
        {"name":"cni0","mac":"aa:bb:cc:00:00:01"},
        {"name":"veth1234","mac":"aa:bb:cc:00:00:02"},
        {"name":"eth0","mac":"aa:bb:cc:00:00:03","sandbox":"/var/run/netns/p1"}],
        "ips":[{"address":"10.0.0.5/24","interface":2}]}"#;

    #[test]
    fn defaults_match_the_agent() {
        let c =
            conf(r#"{"cniVersion":"1.0.0","name":"k8s","type":"bulkhead-cni"}"#).expect("valid");
        assert_eq!(
            c.pin_dir(),
            std::path::PathBuf::from(format!(
                "/sys/fs/bpf/bulkhead/v{}",
                crate::layout::LAYOUT_VERSION
            ))
        );
        assert_eq!(c.endpoint_prefixes, ["veth", "lxc", "cali"]);
        assert!(c.prev_result.is_none());
    }

    #[test]
    fn bad_configurations_are_named() {
        let e = conf("{").expect_err("not JSON");
        assert_eq!(e.code, code::DECODE_FAILURE);
        let e = conf(r#"{"cniVersion":"0.2.0"}"#).expect_err("too old");
        assert_eq!(e.code, code::INCOMPATIBLE_VERSION);
        assert!(e.msg.contains("0.2.0"), "{}", e.msg);
        let e = conf(r#"{"cniVersion":"1.0.0","endpointPrefixes":[""]}"#).expect_err("empty");
        assert_eq!(e.code, code::INVALID_CONFIG);
        assert!(e.msg.contains("endpointPrefixes"), "{}", e.msg);
    }

    #[test]
    fn the_host_side_is_the_prefixed_interface_outside_the_sandbox() {
        let prev: Value = serde_json::from_str(PREV).expect("json");
        let prefixes = default_prefixes();
        assert_eq!(
            host_interface(&prev, "eth0", &prefixes).expect("found"),
            "veth1234"
        );
        // The bridge is outside the sandbox too, but no endpoint prefix names it.
        let e = host_interface(&prev, "eth0", &["cni".to_string(), "veth".to_string()])
            .expect_err("two candidates");
        assert!(
            e.msg.contains("cni0") && e.msg.contains("veth1234"),
            "{}",
            e.msg
        );
        let e = host_interface(&prev, "eth0", &["lxc".to_string()]).expect_err("none");
        assert_eq!(e.code, code::INVALID_CONFIG);
        assert!(e.msg.contains("eth0") && e.msg.contains("lxc"), "{}", e.msg);
        let e = host_interface(&serde_json::json!({}), "eth0", &prefixes).expect_err("no list");
        assert!(e.msg.contains("prevResult has no interfaces"), "{}", e.msg);
    }

    #[test]
    fn add_passes_the_previous_result_through_in_the_configured_version() {
        let c = conf(&format!(
            r#"{{"cniVersion":"0.4.0","name":"n","type":"bulkhead-cni","prevResult":{PREV}}}"#
        ))
        .expect("valid");
        let out = pass_through(&c).expect("result");
        assert_eq!(out["cniVersion"], "0.4.0");
        assert_eq!(out["ips"][0]["address"], "10.0.0.5/24");
        assert_eq!(out["interfaces"].as_array().map(Vec::len), Some(3));
        let bare = conf(r#"{"cniVersion":"1.0.0"}"#).expect("valid");
        assert_eq!(
            pass_through(&bare).expect_err("no prevResult").code,
            code::INVALID_CONFIG
        );
    }

    #[test]
    fn environment_and_errors_follow_the_spec() {
        let env = CniEnv::from_vars(|k| (k == "CNI_COMMAND").then(|| "ADD".to_string()));
        let e = env.require_container().expect_err("no container id");
        assert_eq!(e.code, code::INVALID_ENVIRONMENT);
        assert!(e.msg.contains("CNI_CONTAINERID"));
        let doc = CniError::new(code::TRY_AGAIN_LATER, "x").to_json("1.0.0");
        assert_eq!(doc["code"], 11);
        assert_eq!(doc["msg"], "x");
        assert_eq!(doc["cniVersion"], "1.0.0");
        assert_eq!(version_info()["supportedVersions"][4], "1.1.0");
    }
}
