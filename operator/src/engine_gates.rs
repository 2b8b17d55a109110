//! The engine's side of promotion gates: checks, and the effective modes
//! they put into the compiler's snapshot.

use std::collections::BTreeMap;

use bulkhead_api::SegmentationPolicySpec;
use kube::runtime::events::EventType;

use super::Engine;
use crate::status;

impl Engine {
    /// Puts the promotions' modes into what the compiler reads.
    pub(super) fn sync_modes(&mut self) {
        let snapshot = match &self.compiler {
            Some(c) => c.snapshot(),
            None => &self.pending,
        };
        let (policies, effective) = (&snapshot.policies, &snapshot.effective_modes);
        let changes = self.promotions.mode_changes(policies, effective);
        for change in changes {
            self.apply(change);
            self.dirty = true;
        }
    }

    /// Checks every promotion gate at `now` (asking the collector), changes
    /// the effective mode of the policies whose gate opened, and records an
    /// Event for each. Only the leader calls it.
    pub async fn check_promotions(&mut self, now: jiff::Timestamp) {
        if self.compiler.is_none() {
            return;
        }
        let gated: BTreeMap<String, SegmentationPolicySpec> = self
            .snapshot()
            .policies
            .iter()
            .filter(|(_, p)| p.promotion.is_some())
            .map(|(n, p)| (n.clone(), p.clone()))
            .collect();
        let made = self.promotions.check(&gated, now, &self.metrics).await;
        self.sync_modes();
        for p in made {
            tracing::info!(policy = p.policy, "{}", p.message);
            let note = Some(p.message);
            let (recorder, metrics) = (&self.recorder, &self.metrics);
            status::policy_event(
                recorder,
                &p.policy,
                EventType::Normal,
                "Promoted",
                "Promote",
                note,
                metrics,
            )
            .await;
        }
    }
}

/// Rules in `now` that were not in `before`: (policy, rule, when).
pub(super) fn newly_expired(
    before: &BTreeMap<String, Vec<(String, jiff::Timestamp)>>,
    now: &BTreeMap<String, Vec<(String, jiff::Timestamp)>>,
) -> Vec<(String, String, jiff::Timestamp)> {
    let mut out = Vec::new();
    for (policy, rules) in now {
        let old = before.get(policy);
        for (rule, at) in rules {
            if !old.is_some_and(|o| o.iter().any(|(r, _)| r == rule)) {
                out.push((policy.clone(), rule.clone(), *at));
            }
        }
    }
    out
}

impl Engine {
    /// An Event on each policy whose rule just expired (exceptions get
    /// theirs from their state), and the counter.
    pub(super) async fn record_expiries(&self, newly: Vec<(String, String, jiff::Timestamp)>) {
        for (policy, rule, at) in newly {
            self.metrics.rule_expirations.inc();
            if policy.starts_with(bulkhead_policy::exception::POLICY_PREFIX) {
                continue;
            }
            let message = format!("rule {rule} expired at {at}: removed from every rule map");
            tracing::info!(policy, "{message}");
            let (recorder, metrics) = (&self.recorder, &self.metrics);
            status::policy_event(
                recorder,
                &policy,
                EventType::Normal,
                "RuleExpired",
                "Expire",
                Some(message),
                metrics,
            )
            .await;
        }
    }
}
