//! Who answers for a policy or a rule, and until when it holds.
//!
//! ```text
//!  SegmentationPolicy.spec  {owner, contact, ticket, reviewBy}   the default
//!     └─ rule              {owner, contact, ticket, reviewBy, expires}
//!                            a rule's own fields win over its policy's
//! ```
//!
//! `reviewBy` is a date: after it the policy's status warns that the review
//! is overdue. `expires` is a time: from it on the compiler drops the rule
//! from every rule map (the operator recompiles at that second). Neither is
//! judged by the API server, which has no clock in CRD rules; the operator
//! judges both against its own.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Owner, contact, ticket and review date of a policy or a rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ownership {
    /// The team that answers for it, such as `payments`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub owner: Option<String>,
    /// Whom to ask when it blocks a flow: an address, a channel or a rota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub contact: Option<String>,
    /// The change or request ticket that explains it, such as `CHG-1234`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub ticket: Option<String>,
    /// The date (`YYYY-MM-DD`, UTC) by which it must be reviewed again; the
    /// status warns once it has passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"), extend("format" = "date"))]
    pub review_by: Option<String>,
}

impl Ownership {
    /// These fields, with `fallback`'s where these are absent (a rule's over its policy's).
    pub fn or(&self, fallback: &Ownership) -> Ownership {
        Ownership {
            owner: self.owner.clone().or_else(|| fallback.owner.clone()),
            contact: self.contact.clone().or_else(|| fallback.contact.clone()),
            ticket: self.ticket.clone().or_else(|| fallback.ticket.clone()),
            review_by: self
                .review_by
                .clone()
                .or_else(|| fallback.review_by.clone()),
        }
    }

    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self == &Ownership::default()
    }
}
