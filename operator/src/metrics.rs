//! Prometheus metrics of the operator, with bounded label sets.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A label naming an object kind (a fixed, small set).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `pod`, `namespace`, `node`, `externalnode`, `labelmapping`, `segmentationpolicy`,
    /// `noderulemap`, `identitymap`, `lease`.
    pub kind: String,
}

/// A label saying what a publish pass did.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PassLabel {
    /// `full` (rule maps, shards and every status) or `status` (the policy
    /// status of nodes whose agents reported).
    pub kind: String,
}

/// A label saying whether a compile was whole or incremental.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CompileLabel {
    /// `full` or `incremental`.
    pub mode: String,
}

/// Why rules are to be recertified: four values.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// never_hit, unused, expired or review_overdue.
    pub reason: String,
}

/// A label naming a SegmentationPolicy that has a promotion gate: bounded
/// by the policies people write, never by traffic.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabel {
    /// The policy's name.
    pub policy: String,
}

/// A label saying how a promotion gate check ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GateLabel {
    /// `observing`, `blocked`, `unknown`, `open`, `promoted` or `invalid`.
    pub state: String,
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Every metric the operator exports.
#[derive(Debug)]
pub struct Metrics {
    /// Time of one publish pass (diff, apply, status).
    pub reconcile_duration: Histogram,
    /// Time of one compile.
    pub compile_duration: Family<CompileLabel, Histogram>,
    /// Objects watched, by kind.
    pub objects: Family<KindLabel, Gauge>,
    /// Errors, by the kind of object involved.
    pub errors: Family<KindLabel, Counter>,
    /// Objects written, by kind.
    pub writes: Family<KindLabel, Counter>,
    /// 1 while this replica holds the lease.
    pub leader: Gauge,
    /// Publish passes, by what they did.
    pub passes: Family<PassLabel, Counter>,
    /// Promotions made (gates that opened).
    pub promotions: Counter,
    /// Promotion gate checks, by how they ended.
    pub promotion_checks: Family<GateLabel, Counter>,
    /// Per promoted policy: flows in scope its promotion denied since the
    /// promotion (within the last quiet window). Above zero is an alert;
    /// nothing demotes on its own.
    pub promoted_denied_flows: Family<PolicyLabel, Gauge>,
    /// Endpoints by mode, the unlabeled count, exposure per application.
    /// SegmentationExceptions by state (Pending, Active, Expired, Refused).
    pub exceptions: Family<GateLabel, Gauge>,
    /// Exceptions that reached their `expiresAt` and stopped being enforced.
    pub exception_expirations: Counter,
    /// Policy rules that reached their `expires` and left the rule maps.
    pub rule_expirations: Counter,
    /// SegmentationPolicies past their review date (their own or a rule's).
    pub review_overdue: Gauge,
    /// Rules to recertify, by reason (never hit, unused, expired, review
    /// overdue); a rule counts once under each reason that holds.
    pub rules_recertify: Family<ReasonLabel, Gauge>,
    /// Per watched kind: the highest resourceVersion that what the operator
    /// has published reflects (see `observed.rs`); what to wait on after a change.
    pub published_resource_version: Family<KindLabel, Gauge>,
    pub kpis: crate::kpi::Kpis,
}

impl Metrics {
    /// Creates the metrics and registers them under `bulkhead_operator_`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            reconcile_duration: duration_histogram(),
            compile_duration: Family::new_with_constructor(duration_histogram),
            objects: Family::default(),
            errors: Family::default(),
            writes: Family::default(),
            leader: Gauge::default(),
            passes: Family::default(),
            promotions: Counter::default(),
            promotion_checks: Family::default(),
            promoted_denied_flows: Family::default(),
            exceptions: Family::default(),
            exception_expirations: Counter::default(),
            rule_expirations: Counter::default(),
            review_overdue: Gauge::default(),
            rules_recertify: Family::default(),
            published_resource_version: Family::default(),
            kpis: crate::kpi::Kpis::register(registry),
        };
        let r = registry.sub_registry_with_prefix("bulkhead_operator");
        r.register(
            "reconcile_duration_seconds",
            "Time of one publish pass: diff, apply, status",
            m.reconcile_duration.clone(),
        );
        r.register(
            "compile_duration_seconds",
            "Time of one compile, whole or incremental",
            m.compile_duration.clone(),
        );
        r.register("objects", "Objects watched, by kind", m.objects.clone());
        r.register(
            "errors",
            "Errors, by kind of object involved",
            m.errors.clone(),
        );
        r.register("writes", "Objects written, by kind", m.writes.clone());
        r.register(
            "published_resource_version",
            "Per watched kind, the highest resourceVersion the published rule and identity maps reflect",
            m.published_resource_version.clone(),
        );
        r.register(
            "leader",
            "1 while this replica holds the lease",
            m.leader.clone(),
        );
        r.register(
            "passes",
            "Publish passes: full (maps, shards, statuses) or status only",
            m.passes.clone(),
        );
        r.register(
            "promotions",
            "Promotions made: gates that opened and changed a policy's effective mode",
            m.promotions.clone(),
        );
        r.register(
            "promotion_checks",
            "Promotion gate checks, by how they ended",
            m.promotion_checks.clone(),
        );
        r.register(
            "promoted_denied_flows",
            "Flows in scope a promoted policy denied since its promotion (within the quiet window): an alert, never a demotion",
            m.promoted_denied_flows.clone(),
        );
        r.register(
            "exceptions",
            "SegmentationExceptions by state: Pending, Active (enforced), Expired, Refused",
            m.exceptions.clone(),
        );
        r.register(
            "exception_expirations",
            "SegmentationExceptions that reached expiresAt and stopped being enforced",
            m.exception_expirations.clone(),
        );
        r.register(
            "rule_expirations",
            "Policy rules that reached their expires time and left the rule maps",
            m.rule_expirations.clone(),
        );
        r.register(
            "policies_review_overdue",
            "SegmentationPolicies past their reviewBy date (the policy's or one of its rules')",
            m.review_overdue.clone(),
        );
        r.register(
            "rules_recertify",
            "SegmentationPolicy rules to recertify, by reason: never_hit, unused (not hit within --unused-for), expired, review_overdue",
            m.rules_recertify.clone(),
        );
        m
    }

    /// Sets `rules_recertify` from the findings of a hits pass.
    pub fn observe_recertify(&self, findings: &[bulkhead_policy::recertify::Finding]) {
        for (reason, n) in bulkhead_policy::recertify::count_by_reason(findings) {
            let label = ReasonLabel {
                reason: reason.label().into(),
            };
            self.rules_recertify.get_or_create(&label).set(n as i64);
        }
    }

    /// Counts one promotion gate check that ended in `state`.
    pub fn promotion_check(&self, state: &str) {
        let label = GateLabel {
            state: state.into(),
        };
        self.promotion_checks.get_or_create(&label).inc();
    }

    /// Counts one publish pass of `kind` (`full` or `status`).
    pub fn pass(&self, kind: &str) {
        let label = PassLabel { kind: kind.into() };
        self.passes.get_or_create(&label).inc();
    }

    /// Counts one error about `kind`.
    pub fn error(&self, kind: &str) {
        let label = KindLabel { kind: kind.into() };
        self.errors.get_or_create(&label).inc();
    }

    /// Counts one write of `kind`.
    pub fn write(&self, kind: &str) {
        let label = KindLabel { kind: kind.into() };
        self.writes.get_or_create(&label).inc();
    }
}
