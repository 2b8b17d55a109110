//! KPIs for dashboards, from each compile: endpoints by mode, the unlabeled
//! count, and exposure per application (`bulkhead_insight::exposure`, the
//! compiler's verdict function over every possible pair; docs/reports.md).
//!
//! Label sets stay bounded: `mode` has three values, `ports` two, and
//! `application` at most [`MAX_APPLICATIONS`] (the applications with the
//! most endpoints; the rest are summed into `(other)`).

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bulkhead_api::policy::EnforcementMode;
use bulkhead_insight::coverage::coverage;
use bulkhead_insight::exposure::{exposure, ExposureOptions, GroupExposure};
use bulkhead_policy::Output;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Applications exported one by one; the rest are `(other)`.
pub const MAX_APPLICATIONS: usize = 50;
/// Exposure is recomputed at most this often: it visits every pair.
pub const EXPOSURE_EVERY: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModeLabel {
    /// `visibility`, `selective` or `full`.
    pub mode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExposureLabel {
    /// The `app` label's value, `(none)`, `(other)` or `overall`.
    pub application: String,
    /// `all` (every TCP/UDP/SCTP port) or `risky` (SSH, RDP, SMB, WinRM, databases).
    pub ports: String,
}

type Ratio = Gauge<f64, AtomicU64>;

/// The KPI gauges.
#[derive(Debug, Default)]
pub struct Kpis {
    pub endpoints: Family<ModeLabel, Gauge>,
    pub unlabeled: Gauge,
    pub exposure_ratio: Family<ExposureLabel, Ratio>,
    last_exposure: Mutex<Option<Instant>>,
}

impl Kpis {
    /// Registers under `bulkhead_operator_`.
    pub fn register(registry: &mut Registry) -> Self {
        let k = Self::default();
        let r = registry.sub_registry_with_prefix("bulkhead_operator");
        r.register(
            "endpoints",
            "Managed endpoints (pods, Nodes, ExternalNodes), by enforcement mode",
            k.endpoints.clone(),
        );
        r.register(
            "unlabeled_endpoints",
            "Managed endpoints without segmentation labels (the labeling queue)",
            k.unlabeled.clone(),
        );
        r.register(
            "exposure_ratio",
            "Reachable over possible (source, port/protocol) pairs under the current policy, by application",
            k.exposure_ratio.clone(),
        );
        k
    }

    /// Updates the gauges from a compile's output (exposure at most every
    /// [`EXPOSURE_EVERY`], unless `force`).
    pub fn observe(&self, out: &Output, force: bool) {
        let c = coverage(out, &[], "app");
        for (mode, n) in [
            (EnforcementMode::Visibility, c.endpoints.visibility),
            (EnforcementMode::Selective, c.endpoints.selective),
            (EnforcementMode::Full, c.endpoints.full),
        ] {
            let mode = bulkhead_insight::report::html::mode_name(mode).to_string();
            self.endpoints
                .get_or_create(&ModeLabel { mode })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.unlabeled
            .set(i64::try_from(out.unlabeled.len()).unwrap_or(i64::MAX));
        let Ok(mut last) = self.last_exposure.lock() else {
            return;
        };
        if !force && last.is_some_and(|t| t.elapsed() < EXPOSURE_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        let e = exposure(out, &ExposureOptions::default());
        self.exposure_ratio.clear();
        let mut apps = e.applications;
        apps.sort_by(|a, b| {
            b.endpoints
                .cmp(&a.endpoints)
                .then_with(|| a.name.cmp(&b.name))
        });
        let mut other = GroupExposure {
            name: "(other)".into(),
            ..GroupExposure::default()
        };
        let rest = apps.split_off(apps.len().min(MAX_APPLICATIONS));
        for g in &rest {
            other.endpoints += g.endpoints;
            for (to, from) in [
                (&mut other.all_ports, &g.all_ports),
                (&mut other.risky_ports, &g.risky_ports),
            ] {
                to.possible += from.possible;
                to.reachable += from.reachable;
            }
        }
        if !rest.is_empty() {
            apps.push(other);
        }
        apps.push(e.overall);
        for g in &apps {
            for (ports, reach) in [("all", &g.all_ports), ("risky", &g.risky_ports)] {
                let ratio = if reach.possible == 0 {
                    0.0
                } else {
                    reach.reachable as f64 / reach.possible as f64
                };
                self.exposure_ratio
                    .get_or_create(&ExposureLabel {
                        application: g.name.clone(),
                        ports: ports.into(),
                    })
                    .set(ratio);
            }
        }
    }
}

/// The `bulkhead_*` metric names a dashboard's queries use.
#[cfg(test)]
pub(crate) fn dashboard_metrics(dashboard: &str) -> std::collections::BTreeSet<String> {
    let v: serde_json::Value = serde_json::from_str(dashboard).expect("dashboard JSON");
    let mut names = std::collections::BTreeSet::new();
    for p in v["panels"].as_array().into_iter().flatten() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap_or_default();
            for (i, _) in expr.match_indices("bulkhead_") {
                let name: String = expr[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                names.insert(name);
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_policy::snapshot::{Node, Pod, PodKey};
    use bulkhead_policy::{compile, CompileOptions, IdentityAllocation, Snapshot};

    const DASHBOARD: &str = include_str!("../../charts/bulkhead/dashboards/bulkhead-kpis.json");

    fn output() -> Output {
        let mut s = Snapshot::default();
        s.nodes.insert(
            "n1".into(),
            Node {
                addresses: vec!["172.16.0.1".parse().expect("ip")],
                ..Node::default()
            },
        );
        s.pods.insert(
            PodKey::new("x", "a"),
            Pod {
                node: Some("n1".into()),
                addresses: vec!["10.0.0.1".parse().expect("ip")],
                ..Pod::default()
            },
        );
        compile(
            &s,
            &CompileOptions::default(),
            &IdentityAllocation::default(),
        )
    }

    #[test]
    fn the_gauges_follow_the_compile() {
        let mut registry = Registry::default();
        let k = Kpis::register(&mut registry);
        k.observe(&output(), true);
        let visibility = ModeLabel {
            mode: "visibility".into(),
        };
        assert_eq!(k.endpoints.get_or_create(&visibility).get(), 2);
        assert_eq!(k.unlabeled.get(), 2, "the pod and the node have no labels");
        let overall = ExposureLabel {
            application: "overall".into(),
            ports: "all".into(),
        };
        // Visibility everywhere: every possible pair is reachable.
        assert_eq!(k.exposure_ratio.get_or_create(&overall).get(), 1.0);
    }

    #[test]
    fn the_dashboard_queries_only_metrics_the_operator_exports() {
        let mut registry = Registry::default();
        let metrics = crate::metrics::Metrics::register(&mut registry);
        metrics.kpis.observe(&output(), true);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        let exported: std::collections::BTreeSet<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .collect();
        let wanted = dashboard_metrics(DASHBOARD);
        let ours: Vec<&String> = wanted
            .iter()
            .filter(|n| n.starts_with("bulkhead_operator_"))
            .collect();
        assert!(ours.len() >= 3, "{wanted:?}");
        for name in ours {
            assert!(
                exported.contains(name.as_str()),
                "{name} is not in /metrics:\n{text}"
            );
        }
        // Every other name belongs to the collector, whose test checks it.
        assert!(wanted
            .iter()
            .all(|n| n.starts_with("bulkhead_operator_") || n.starts_with("bulkhead_collector_")));
    }
}
