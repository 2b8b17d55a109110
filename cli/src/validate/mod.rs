//! Client-side validation: what the API server would reject, caught before a
//! pull request merges.
//!
//! ```text
//!  untyped value ──► schema.rs: unknown fields, bounds (from the CRD's own schema)
//!  typed spec ─────► policy.rs, mapping.rs: the CRDs' CEL rules, in Rust
//!  NetworkPolicy ──► network_policy.rs: unknown fields (values: at conversion)
//! ```
//!
//! Each check mirrors a rule the CRD carries, with the rule's own message, so
//! `simulate` in CI rejects what `kubectl apply` would. Violations name the
//! field; the loader adds the file, line and object.

mod mapping;
mod network_policy;
mod policy;
mod schema;

use std::fmt;

use bulkhead_api::selector::{LabelSelector, SelectorOperator};
use ipnet::IpNet;

pub use mapping::{external_node, label_mapping};
pub use network_policy::network_policy;
pub use policy::{segmentation_exception, segmentation_policy};
pub use schema::unknown_fields_and_bounds;

/// One broken rule: the field (`spec.ingress[0].peers[1].cidr`) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The path of the offending field, from the object's root.
    pub field: String,
    /// What is wrong, in the CRD's words.
    pub message: String,
}

impl Violation {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// CEL's `isCIDR`: an address, a slash and a prefix length that fits it.
fn is_cidr(text: &str) -> bool {
    text.parse::<IpNet>().is_ok()
}

/// The selector rule every CRD shares: `In`/`NotIn` need values, `Exists`
/// and `DoesNotExist` take none.
fn check_selector(selector: &LabelSelector, field: &str, out: &mut Vec<Violation>) {
    for (i, req) in selector.match_expressions.iter().enumerate() {
        let needs_values = matches!(req.operator, SelectorOperator::In | SelectorOperator::NotIn);
        if needs_values == req.values.is_empty() {
            out.push(Violation::new(
                format!("{field}.matchExpressions[{i}]"),
                "values must be non-empty for the In and NotIn operators and empty for Exists and DoesNotExist",
            ));
        }
    }
}
