//! `IdentityMap`: the cluster-wide directory of identities and addresses,
//! split into shards so that one pod's change rewrites one small object.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::selector::Labels;

/// One shard of identity → labels and address prefix → identity.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "bulkhead.dev",
    version = "v1alpha1",
    kind = "IdentityMap",
    plural = "identitymaps",
    shortname = "idm",
    category = "bulkhead",
    printcolumn = r#"{"name":"Shard","type":"integer","jsonPath":".spec.shard"}"#,
    printcolumn = r#"{"name":"Of","type":"integer","jsonPath":".spec.shards"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct IdentityMapSpec {
    /// This shard's index, from 0.
    pub shard: u32,
    /// How many shards there are in all.
    pub shards: u32,
    /// Identities whose number falls in this shard (`id % shards == shard`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identities: Vec<IdentityEntry>,
    /// Address prefixes that hash to this shard, with the identity they map to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<PrefixEntry>,
    /// Numbers of this shard that no endpoint uses any more, in quarantine:
    /// not handed to another label set until the quarantine has passed, and
    /// given back to the same label set if it returns. The operator reads
    /// them back after a restart or a failover; agents ignore them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub released: Vec<ReleasedIdentity>,
}

/// A number in quarantine: the label set it stood for and when it was released.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct ReleasedIdentity {
    /// The number.
    pub id: u32,
    /// The label set it stood for.
    pub labels: Labels,
    /// When the last endpoint with it went away, RFC 3339 UTC.
    #[schemars(with = "String")]
    pub released_at: jiff::Timestamp,
}

/// A numeric identity and the segmentation labels it stands for.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct IdentityEntry {
    /// The number carried in BPF maps and flow records.
    pub id: u32,
    /// The label set. CIDR identities carry `bulkhead.dev/cidr`.
    pub labels: Labels,
}

/// An address or range and its identity.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct PrefixEntry {
    /// `10.1.2.3/32`, `fd00::5/128`, `10.0.0.0/8`...
    pub cidr: String,
    /// The identity of the addresses in it (the longest prefix wins).
    pub identity: u32,
    /// Who the prefix belongs to, for flow records: `namespace/pod`,
    /// `node/<name>`, `externalnode/<name>` or `cidr/<range>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}
