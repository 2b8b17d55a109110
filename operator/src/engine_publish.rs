//! The engine's publishing: rule maps and identity shards written to the
//! API server, and the statuses of the policies and label mappings they
//! come from.

use std::collections::BTreeSet;
use std::time::Instant;

use super::Engine;
use crate::feed::Kind;
use crate::status;
use crate::{hits, publish, Error};

impl Engine {
    pub(super) async fn publish(&mut self) -> Result<(), Error> {
        let Some(compiler) = &self.compiler else {
            return Ok(());
        };
        let out = compiler.output();
        let started = Instant::now();
        // Shards and rule maps at once: a label change touches both, and
        // one round trip instead of two is most of its propagation time.
        // No order is safer than the other. A rule naming an identity no
        // shard maps an address to yet matches no packet; an address whose
        // new identity no rule names yet is judged as that identity's label
        // set was before (numbers are quarantined, never reused at once).
        // The agent programs any mix of the two, each pass all or nothing.
        let (shards, rule_maps) = futures::future::join(
            publish::shards(
                &self.client,
                &out.identity_maps,
                &mut self.shards,
                &self.metrics,
            ),
            publish::rule_maps(
                &self.client,
                &out.rule_maps,
                &mut self.rule_maps,
                &self.metrics,
            ),
        )
        .await;
        let (shards, rule_maps) = (shards?, rule_maps?);
        let written = Instant::now();
        self.write_policy_statuses(None).await;
        tracing::debug!(
            shards,
            rule_maps,
            maps_ms = (written - started).as_secs_f64() * 1e3,
            statuses_ms = written.elapsed().as_secs_f64() * 1e3,
            "published"
        );
        let Some(compiler) = &self.compiler else {
            return Ok(());
        };
        let out = compiler.output();
        for (name, facts) in &out.mappings {
            let generation = self
                .generations
                .get(&(Kind::LabelMapping, name.clone()))
                .copied();
            let st = status::mapping_status(facts, generation);
            if let Err(e) = self
                .statuses
                .mapping(&self.client, name, st, &self.metrics)
                .await
            {
                self.metrics.error("labelmapping");
                tracing::warn!(error = %e, "status not written");
            }
        }
        self.statuses.retain(&out.policies, &out.mappings);
        Ok(())
    }

    /// Writes the status of every SegmentationPolicy, or of those on `nodes`.
    pub(super) async fn write_policy_statuses(&mut self, nodes: Option<&BTreeSet<String>>) {
        let Some(compiler) = &self.compiler else {
            return;
        };
        let out = compiler.output();
        // Translated NetworkPolicies (`networkpolicy:<ns>/<name>`) and
        // exceptions (`exception:<name>`) have no SegmentationPolicy to
        // write a status to.
        let policies = out.policies.iter().filter(|(name, facts)| {
            !name.starts_with(bulkhead_policy::netpol::POLICY_PREFIX)
                && !name.starts_with(bulkhead_policy::exception::POLICY_PREFIX)
                && nodes.is_none_or(|n| facts.nodes.iter().any(|f| n.contains(f)))
        });
        let now = jiff::Timestamp::now();
        // Hits move only at the hits interval, in a pass over every policy.
        let refresh_hits = nodes.is_none() && self.hits_due;
        let mut gathered: Vec<(String, Vec<bulkhead_api::hits::RuleHits>)> = Vec::new();
        if nodes.is_none() {
            let specs = compiler.snapshot().policies.values();
            let overdue = specs.filter(|s| bulkhead_policy::governance::overdue(s, now));
            self.metrics.review_overdue.set(overdue.count() as i64);
        }
        for (name, facts) in policies {
            let generation = self
                .generations
                .get(&(Kind::SegmentationPolicy, name.clone()))
                .copied();
            let programmed = status::nodes_programmed(facts, &out.rule_maps, &self.rule_maps);
            let mut st = status::policy_status(facts, generation, programmed);
            let spec = compiler.snapshot().policies.get(name);
            if let Some(spec) = spec {
                st.warnings
                    .extend(bulkhead_policy::governance::warnings(spec, now));
            }
            let spec_mode = spec.and_then(|p| p.enforcement);
            st.effective_mode = compiler
                .snapshot()
                .effective_modes
                .get(name)
                .copied()
                .or(spec_mode);
            if let Some(gate) = self.promotions.status(name) {
                st.conditions
                    .push(status::promoted_condition(gate, generation));
                st.promotion = Some(gate.clone());
            }
            let before = match self.statuses.written_hits(&self.client, name).await {
                Ok(h) => h,
                Err(e) => {
                    self.metrics.error("segmentationpolicy");
                    tracing::warn!(error = %e, "status not read; not written");
                    continue;
                }
            };
            st.rule_hits = match spec.filter(|_| refresh_hits) {
                Some(spec) => hits::policy_hits(name, spec, self.rule_maps.values(), &before),
                None => before,
            };
            if refresh_hits {
                gathered.push((name.clone(), st.rule_hits.clone()));
            }
            if let Err(e) = self
                .statuses
                .policy(&self.client, &self.recorder, name, st, &self.metrics)
                .await
            {
                self.metrics.error("segmentationpolicy");
                tracing::warn!(error = %e, "status not written");
            }
        }
        if refresh_hits {
            self.hits_due = false;
            self.metrics.pass("hits");
            let specs = &compiler.snapshot().policies;
            let uses = gathered.iter().filter_map(|(name, hits)| {
                let spec = specs.get(name)?;
                Some(bulkhead_policy::recertify::PolicyUse { name, spec, hits })
            });
            let findings = bulkhead_policy::recertify::recertify(uses, now, self.unused_for);
            self.metrics.observe_recertify(&findings);
        }
    }
}
