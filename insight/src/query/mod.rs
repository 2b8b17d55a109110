//! Queries over flow records: which records ([`FlowFilter`], built from
//! [`EndpointMatch`]es) and how to sum them ([`GroupBy`], [`aggregate`]).

mod endpoint;
mod filter;
mod group;
pub mod params;

pub use endpoint::{EndpointMatch, LabelRequirement};
pub use filter::{parse_protocol, FlowFilter, ServiceName, VerdictFilter};
pub use group::{aggregate, direction_name, protocol_name, Group, GroupBy, GroupKey};

/// Input that does not parse, naming what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("endpoint {input:?}: {reason}")]
    Endpoint { input: String, reason: String },
    #[error("verdict {0:?}: expected allow, deny or would-deny")]
    Verdict(String),
    #[error("protocol {0:?}: expected TCP, UDP, SCTP, ICMP or ICMPv6")]
    Protocol(String),
    #[error("service {0:?}: expected namespace/name")]
    Service(String),
    #[error("group-by key {input:?}: {reason}")]
    GroupKey { input: String, reason: String },
    #[error("time range: since {since} is not before until {until}")]
    EmptyRange {
        since: jiff::Timestamp,
        until: jiff::Timestamp,
    },
}
