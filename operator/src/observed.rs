//! What the operator has taken in, as a fact a client can wait on.
//!
//! ```text
//!  watch task ── event of kind K at resourceVersion R ──► channel ──► engine
//!       └─ after the send: fed[K] = max(fed[K], R)
//!  engine turn: snapshot fed, drain the channel, pass
//!       └─ the pass succeeded and left nothing dirty: published[K] = snapshot[K]
//! ```
//!
//! Every event counted in the snapshot was in the channel before the engine
//! drained it, so `published[K] >= R` means the rule maps and identity maps
//! now reflect every event of kind K up to R. A test (or a person) who
//! changed an object waits for the gauge
//! `bulkhead_operator_published_resource_version{kind}` to reach the
//! object's resourceVersion, instead of sleeping. A deletion's event carries
//! a resourceVersion above the object's last one: wait for the gauge to pass
//! the version read before the delete. resourceVersions are etcd revisions
//! on every API server this runs against; one that does not parse as a
//! number is not counted.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Kind name (as in the `kind` label of the operator's metrics) to the
/// highest resourceVersion handed to the engine.
#[derive(Debug, Default)]
pub struct Observed {
    fed: Mutex<BTreeMap<&'static str, u64>>,
}

impl Observed {
    /// An event of `kind` carrying `resource_version` is in the engine's channel.
    pub fn fed(&self, kind: &'static str, resource_version: Option<&str>) {
        let Some(rv) = resource_version.and_then(|v| v.parse::<u64>().ok()) else {
            return;
        };
        let mut fed = self.fed.lock().unwrap_or_else(|p| p.into_inner());
        let e = fed.entry(kind).or_default();
        *e = (*e).max(rv);
    }

    /// What has been fed so far, per kind.
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        self.fed.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_highest_numeric_version_per_kind() {
        let o = Observed::default();
        o.fed("pod", Some("12"));
        o.fed("pod", Some("9"));
        o.fed("pod", Some("not-a-number"));
        o.fed("pod", None);
        o.fed("namespace", Some("3"));
        let s = o.snapshot();
        assert_eq!(s.get("pod"), Some(&12));
        assert_eq!(s.get("namespace"), Some(&3));
        assert_eq!(s.len(), 2);
    }
}
