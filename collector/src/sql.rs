//! The SQL both backends share: filters and group-by keys over the edge
//! columns, in two dialects that differ only in quoting and in how a label
//! is looked up (`json_extract` in SQLite, parallel arrays in ClickHouse).

use std::net::{IpAddr, Ipv4Addr};

use bulkhead_insight::{EndpointMatch, FlowFilter, GroupKey, LabelRequirement, VerdictFilter};
use ipnet::IpNet;

use crate::edge::{ip_key, wire};
use crate::tier::Stretch;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    ClickHouse,
}

/// Which side of the edge, as a column prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Src,
    Dst,
}

impl Side {
    fn prefix(self) -> &'static str {
        match self {
            Side::Src => "src",
            Side::Dst => "dst",
        }
    }
}

impl Dialect {
    /// A string literal.
    pub fn quote(self, s: &str) -> String {
        match self {
            Dialect::Sqlite => format!("'{}'", s.replace('\'', "''")),
            Dialect::ClickHouse => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        }
    }

    /// Whether the side carries label `key` (a 0/1 expression).
    pub fn label_present(self, side: Side, key: &str) -> String {
        let p = side.prefix();
        match self {
            Dialect::Sqlite => format!(
                "(json_extract({p}_labels, {}) IS NOT NULL)",
                self.quote(&json_path(key))
            ),
            Dialect::ClickHouse => format!("has({p}_label_keys, {})", self.quote(key)),
        }
    }

    /// The value of label `key` on the side (NULL or `''` when absent; read
    /// it together with [`Dialect::label_present`]).
    pub fn label_value(self, side: Side, key: &str) -> String {
        let p = side.prefix();
        match self {
            Dialect::Sqlite => {
                format!("json_extract({p}_labels, {})", self.quote(&json_path(key)))
            }
            Dialect::ClickHouse => format!(
                "{p}_label_values[indexOf({p}_label_keys, {})]",
                self.quote(key)
            ),
        }
    }

    fn to_text(self, column: &str) -> String {
        match self {
            Dialect::Sqlite => format!("CAST({column} AS TEXT)"),
            Dialect::ClickHouse => format!("toString({column})"),
        }
    }

    fn verdict_class(self) -> String {
        match self {
            Dialect::Sqlite => "CASE WHEN verdict = 'deny' THEN 'deny' \
                 WHEN would_verdict = 'deny' THEN 'would-deny' ELSE 'allow' END"
                .into(),
            Dialect::ClickHouse => {
                "multiIf(verdict = 'deny', 'deny', would_verdict = 'deny', 'would-deny', 'allow')"
                    .into()
            }
        }
    }

    /// Distinct (source, destination) address pairs.
    pub fn peers(self) -> &'static str {
        match self {
            Dialect::Sqlite => "count(DISTINCT src_addr || '>' || dst_addr)",
            Dialect::ClickHouse => "uniqExact(src_addr, dst_addr)",
        }
    }
}

/// Label keys are validated to hold no `"`; a JSON path quotes the key so
/// dots and slashes in it (`bulkhead.dev/role`) are part of the name.
fn json_path(key: &str) -> String {
    format!("$.\"{key}\"")
}

/// The (present, value) expressions of a group key, both text or 0/1.
pub fn group_exprs(d: Dialect, key: &GroupKey) -> (String, String) {
    let col = |c: &str| (format!("({c} <> '')"), c.to_string());
    let always = |v: String| ("1".to_string(), v);
    match key {
        GroupKey::SourceLabel(k) => (d.label_present(Side::Src, k), d.label_value(Side::Src, k)),
        GroupKey::DestinationLabel(k) => {
            (d.label_present(Side::Dst, k), d.label_value(Side::Dst, k))
        }
        GroupKey::SourceNamespace => col("src_namespace"),
        GroupKey::DestinationNamespace => col("dst_namespace"),
        GroupKey::SourceName => col("src_name"),
        GroupKey::DestinationName => col("dst_name"),
        GroupKey::Node => always("node".into()),
        GroupKey::Port => always(d.to_text("port")),
        GroupKey::Protocol => always("protocol".into()),
        GroupKey::Verdict => always(d.verdict_class()),
        GroupKey::Direction => always("direction".into()),
        GroupKey::Service => (
            "(svc_addr <> '')".into(),
            "CASE WHEN svc_name <> '' THEN svc_name ELSE svc_addr END".into(),
        ),
    }
}

fn endpoint_condition(d: Dialect, side: Side, m: &EndpointMatch) -> String {
    let p = side.prefix();
    match m {
        EndpointMatch::Labels(reqs) => {
            let terms: Vec<String> = reqs
                .iter()
                .map(|r| {
                    let present = d.label_present(side, r.key());
                    match r {
                        LabelRequirement::Equals { key, value } => format!(
                            "({present} AND {} = {})",
                            d.label_value(side, key),
                            d.quote(value)
                        ),
                        LabelRequirement::NotEquals { key, value } => format!(
                            "NOT ({present} AND {} = {})",
                            d.label_value(side, key),
                            d.quote(value)
                        ),
                        LabelRequirement::Exists { .. } => present,
                    }
                })
                .collect();
            if terms.is_empty() {
                "1".into()
            } else {
                terms.join(" AND ")
            }
        }
        EndpointMatch::Pod { namespace, name } => format!(
            "({p}_kind = 'pod' AND {p}_name = {})",
            d.quote(&format!("{namespace}/{name}"))
        ),
        EndpointMatch::Node(n) => format!(
            "({p}_kind IN ('node', 'externalNode') AND {p}_name = {})",
            d.quote(n)
        ),
        EndpointMatch::Net(net) => net_condition(p, net),
    }
}

fn at_least(p: &str, (hi, lo): (i64, i64)) -> String {
    format!("({p}_ip_hi > {hi} OR ({p}_ip_hi = {hi} AND {p}_ip_lo >= {lo}))")
}

fn at_most(p: &str, (hi, lo): (i64, i64)) -> String {
    format!("({p}_ip_hi < {hi} OR ({p}_ip_hi = {hi} AND {p}_ip_lo <= {lo}))")
}

fn net_condition(p: &str, net: &IpNet) -> String {
    let range = |first: IpAddr, last: IpAddr| {
        format!(
            "{} AND {}",
            at_least(p, ip_key(first)),
            at_most(p, ip_key(last))
        )
    };
    let within = range(net.network(), net.broadcast());
    match net {
        IpNet::V4(_) => format!("({within})"),
        // An IPv6 range never holds an IPv4 address, even where the range
        // covers the IPv4-mapped block that stores them.
        IpNet::V6(_) => {
            let v4 = range(
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V4(Ipv4Addr::BROADCAST),
            );
            format!("({within} AND NOT ({v4}))")
        }
    }
}

/// The edge-level conditions of a filter (everything but time), joined by
/// AND; `1` when there are none.
pub fn edge_conditions(d: Dialect, f: &FlowFilter) -> String {
    let mut c: Vec<String> = Vec::new();
    if let Some(m) = &f.from {
        c.push(endpoint_condition(d, Side::Src, m));
    }
    if let Some(m) = &f.to {
        c.push(endpoint_condition(d, Side::Dst, m));
    }
    if let Some(v) = f.verdict {
        c.push(
            match v {
                VerdictFilter::Allow => "verdict = 'allow'",
                VerdictFilter::Deny => "verdict = 'deny'",
                VerdictFilter::WouldDeny => "(verdict = 'allow' AND would_verdict = 'deny')",
            }
            .into(),
        );
    }
    if let Some(port) = f.port {
        c.push(format!("port = {port}"));
    }
    if let Some(proto) = f.protocol {
        c.push(format!("protocol = {}", d.quote(&wire(&proto))));
    }
    if let Some(node) = &f.node {
        c.push(format!("node = {}", d.quote(node)));
    }
    // As `FlowFilter::matches`: by the name a record carries; by the
    // address alone, for records without a name, when a name is asked for.
    match (&f.service_name, f.service) {
        (None, None) => {}
        (None, Some(a)) => c.push(format!("svc_addr = {}", d.quote(&a.to_string()))),
        (Some(n), None) => c.push(format!("svc_name = {}", d.quote(&n.to_string()))),
        (Some(n), Some(a)) => c.push(format!(
            "(svc_name = {} OR (svc_name = '' AND svc_addr = {}))",
            d.quote(&n.to_string()),
            d.quote(&a.to_string())
        )),
    }
    if c.is_empty() {
        "1".into()
    } else {
        c.join(" AND ")
    }
}

/// `bucket >= from AND bucket < to` for a stretch.
pub fn stretch_condition(s: &Stretch) -> String {
    let mut c = Vec::new();
    if s.from > i64::MIN {
        c.push(format!("bucket >= {}", s.from.max(0)));
    }
    if s.to < i64::MAX {
        c.push(format!("bucket < {}", s.to.max(0)));
    }
    if c.is_empty() {
        "1".into()
    } else {
        c.join(" AND ")
    }
}
