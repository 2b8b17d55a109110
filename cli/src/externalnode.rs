//! `kubectl bulkhead externalnode add`: joins a host outside the cluster.
//!
//! ```text
//!  add NAME --address A --label k=v ──► ExternalNode NAME (server-side apply)
//!                                  ├──► ServiceAccount bulkhead-external-nodes/NAME
//!                                  ├──► ClusterRole + Binding: its NodeRuleMap, ExternalNode (by name), identity shards
//!                                  ├──► Role + Binding: its Lease (by name; create is held to the name by admission)
//!                                  └──► TokenRequest ──► the host's agent.yaml, on stdout
//! ```
//!
//! The token is the host's own credential: RBAC by resourceNames and the
//! admission policy of deploy/rbac/external-nodes.yaml let it touch nothing
//! of another host's.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use base64::Engine as _;
use bulkhead_api::external_node::EXTERNAL_NODE_NAMESPACE;
use bulkhead_api::{ExternalNode, ExternalNodeSpec};
use clap::{Args, Subcommand};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource};

/// The field manager of what `externalnode add` applies.
pub const FIELD_MANAGER: &str = "kubectl-bulkhead";

/// `externalnode`'s subcommands.
#[derive(Debug, Args)]
pub struct ExternalNodeArgs {
    #[command(subcommand)]
    pub command: ExternalNodeCommand,
}

#[derive(Debug, Subcommand)]
pub enum ExternalNodeCommand {
    /// Create (or update) the ExternalNode and the host's credential, and
    /// print the host's /etc/bulkhead/agent.yaml.
    Add(AddArgs),
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// The ExternalNode's name (also its ServiceAccount's and Lease's).
    pub name: String,
    /// An address of the host (repeatable; IPv4 or IPv6).
    #[arg(long = "address", required = true)]
    pub addresses: Vec<String>,
    /// A label of the host, KEY=VALUE (repeatable); LabelMappings read them.
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// An interface to protect (repeatable); none means every interface.
    #[arg(long = "interface")]
    pub interfaces: Vec<String>,
    /// The host's name as LabelMapping `hostnames` match it.
    #[arg(long)]
    pub hostname: Option<String>,
    /// The API server URL the host reaches (default: the kubeconfig's).
    #[arg(long)]
    pub server: Option<String>,
    /// How long the host's token is valid ("8760h", "30d").
    #[arg(long, default_value = "8760h")]
    pub token_ttl: String,
    /// The heartbeat Lease's duration written in the host's config.
    #[arg(long, default_value_t = 40)]
    pub lease_duration_secs: u64,
    /// Write the config file here (mode 0600) instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    if k.is_empty() {
        return Err(format!("{s:?} has an empty key"));
    }
    Ok((k.to_string(), v.to_string()))
}

pub fn run(args: &ExternalNodeArgs) -> anyhow::Result<()> {
    let ExternalNodeCommand::Add(add) = &args.command;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let text = runtime.block_on(add_node(add))?;
    match &add.output {
        Some(path) => write_private(path, &text),
        None => {
            std::io::stdout().write_all(text.as_bytes())?;
            Ok(())
        }
    }
}

fn write_private(path: &PathBuf, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

async fn add_node(add: &AddArgs) -> anyhow::Result<String> {
    for (i, a) in add.addresses.iter().enumerate() {
        a.parse::<std::net::IpAddr>()
            .map_err(|_| anyhow::anyhow!("--address #{}: {a:?} is not an IP address", i + 1))?;
    }
    let ttl: jiff::SignedDuration = add
        .token_ttl
        .parse()
        .map_err(|e| anyhow::anyhow!("--token-ttl {:?}: {e}", add.token_ttl))?;
    let config = kube::Config::infer()
        .await
        .context("reading the kubeconfig")?;
    let server = add.server.clone().unwrap_or_else(|| {
        config
            .cluster_url
            .to_string()
            .trim_end_matches('/')
            .to_string()
    });
    let ca = config
        .root_cert
        .clone()
        .context("the kubeconfig names no CA for the API server; the host needs one")?;
    let client = Client::try_from(config)?;
    let name = &add.name;
    let ssa = PatchParams::apply(FIELD_MANAGER).force();

    let mut node = ExternalNode::new(
        name,
        ExternalNodeSpec {
            hostname: add.hostname.clone(),
            addresses: add.addresses.clone(),
            interfaces: add.interfaces.clone(),
        },
    );
    node.metadata.labels = Some(add.labels.iter().cloned().collect());
    apply(&Api::<ExternalNode>::all(client.clone()), name, &node, &ssa).await?;

    let ns = EXTERNAL_NODE_NAMESPACE;
    let meta = |n: &str, namespace: Option<&str>| ObjectMeta {
        name: Some(n.to_string()),
        namespace: namespace.map(str::to_string),
        labels: Some(BTreeMap::from([(
            "bulkhead.dev/external-node".to_string(),
            name.clone(),
        )])),
        ..ObjectMeta::default()
    };
    let sa = ServiceAccount {
        metadata: meta(name, Some(ns)),
        ..ServiceAccount::default()
    };
    apply(
        &Api::<ServiceAccount>::namespaced(client.clone(), ns),
        name,
        &sa,
        &ssa,
    )
    .await?;
    let subject = Subject {
        kind: "ServiceAccount".into(),
        name: name.clone(),
        namespace: Some(ns.into()),
        ..Subject::default()
    };
    let role_name = format!("bulkhead-external-node:{name}");
    let rule = |group: &str, resources: &[&str], names: bool, verbs: &[&str]| PolicyRule {
        api_groups: Some(vec![group.into()]),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        resource_names: names.then(|| vec![name.clone()]),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..PolicyRule::default()
    };
    let cluster_role = ClusterRole {
        metadata: meta(&role_name, None),
        rules: Some(vec![
            rule(
                "bulkhead.dev",
                &["noderulemaps", "externalnodes"],
                true,
                &["get", "list", "watch"],
            ),
            rule(
                "bulkhead.dev",
                &["noderulemaps/status", "externalnodes/status"],
                true,
                &["get", "patch", "update"],
            ),
            rule(
                "bulkhead.dev",
                &["identitymaps"],
                false,
                &["get", "list", "watch"],
            ),
        ]),
        ..ClusterRole::default()
    };
    apply(
        &Api::<ClusterRole>::all(client.clone()),
        &role_name,
        &cluster_role,
        &ssa,
    )
    .await?;
    let binding = ClusterRoleBinding {
        metadata: meta(&role_name, None),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: role_name.clone(),
        },
        subjects: Some(vec![subject.clone()]),
    };
    apply(
        &Api::<ClusterRoleBinding>::all(client.clone()),
        &role_name,
        &binding,
        &ssa,
    )
    .await?;
    let role = Role {
        metadata: meta(&role_name, Some(ns)),
        rules: Some(vec![
            rule(
                "coordination.k8s.io",
                &["leases"],
                true,
                &["get", "update", "patch"],
            ),
            // create cannot be limited by name: admission holds it to NAME.
            rule("coordination.k8s.io", &["leases"], false, &["create"]),
        ]),
    };
    apply(
        &Api::<Role>::namespaced(client.clone(), ns),
        &role_name,
        &role,
        &ssa,
    )
    .await?;
    let role_binding = RoleBinding {
        metadata: meta(&role_name, Some(ns)),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: role_name.clone(),
        },
        subjects: Some(vec![subject]),
    };
    apply(
        &Api::<RoleBinding>::namespaced(client.clone(), ns),
        &role_name,
        &role_binding,
        &ssa,
    )
    .await?;

    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(ttl.as_secs()),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let answer: TokenRequest = Api::<ServiceAccount>::namespaced(client, ns)
        .create_subresource("token", name, &PostParams::default(), &request)
        .await
        .with_context(|| format!("requesting a token for ServiceAccount {ns}/{name}"))?;
    let token = answer
        .status
        .map(|s| s.token)
        .filter(|t| !t.is_empty())
        .context("the API server returned no token")?;
    Ok(config_file(
        name,
        &server,
        &ca,
        &token,
        add.lease_duration_secs,
    ))
}

async fn apply<K>(api: &Api<K>, name: &str, obj: &K, params: &PatchParams) -> anyhow::Result<()>
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let mut value = serde_json::to_value(obj)?;
    value["apiVersion"] = K::api_version(&()).into();
    value["kind"] = K::kind(&()).into();
    api.patch(name, params, &Patch::Apply(value))
        .await
        .with_context(|| format!("applying {} {name}", K::kind(&())))?;
    Ok(())
}

/// The host's agent.yaml: the agent's flags, its credential included.
pub fn config_file(
    name: &str,
    server: &str,
    ca_der: &[Vec<u8>],
    token: &str,
    lease: u64,
) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut pem = String::new();
    for der in ca_der {
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        let body = b64.encode(der);
        for line in body.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    format!(
        "# bulkhead-agent configuration of external node {name}, written by\n\
         # `kubectl bulkhead externalnode add`. Install it as /etc/bulkhead/agent.yaml,\n\
         # mode 0600: the token is this host's credential, and only this host's.\n\
         external-node: {name}\n\
         lease-duration-secs: {lease}\n\
         api-server: {server}\n\
         api-server-ca-data: {}\n\
         token: {token}\n",
        b64.encode(pem)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_key_value_and_the_config_names_the_host_and_its_server() {
        assert_eq!(parse_label("env=prod"), Ok(("env".into(), "prod".into())));
        assert!(parse_label("env").is_err());
        assert!(parse_label("=x").is_err());
        let text = config_file("db-1", "https://10.0.0.1:6443", &[vec![1, 2, 3]], "tok", 40);
        let v: serde_yaml::Value = serde_yaml::from_str(&text).expect("YAML");
        assert_eq!(v["external-node"], "db-1");
        assert_eq!(v["api-server"], "https://10.0.0.1:6443");
        assert_eq!(v["token"], "tok");
        let pem = base64::engine::general_purpose::STANDARD
            .decode(v["api-server-ca-data"].as_str().expect("ca"))
            .expect("base64");
        let pem = String::from_utf8(pem).expect("PEM text");
        assert!(
            pem.starts_with("-----BEGIN CERTIFICATE-----\nAQID\n"),
            "{pem}"
        );
    }
}
