//! External-node mode (`--external-node NAME`): the agent on a bare-metal or
//! VM host, with a credential that can touch only this host's objects.
//!
//! ```text
//!  main loop ──report(programmed generation, interfaces)──► watch (latest wins)
//!                                                               │
//!  heartbeat task, every renew interval (each call bounded) ◄───┘
//!    1. Lease <namespace>/<host>: renewTime = now (created when missing)
//!    2. GET ExternalNode <host> ──spec.interfaces──► watch ──► main loop
//!    3. its status differs from the report (or the operator marked it
//!       LeaseExpired) ──► PATCH externalnodes/<host>/status
//! ```
//!
//! The main loop never waits on the API server: when it is away, renewals
//! fail and are retried, the maps keep what they hold (fail-static), and the
//! operator, not the agent, says the host is late.

use std::time::Duration;

use bulkhead_api::condition::{types, Condition, ConditionStatus};
use bulkhead_api::external_node::{AGENT_READY, LEASE_EXPIRED};
use bulkhead_api::{ExternalNode, ExternalNodeStatus};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;

use super::status::{FIELD_MANAGER, WRITE_TIMEOUT};

/// How the host's heartbeat runs.
#[derive(Clone, Debug)]
pub struct ExternalConfig {
    /// The namespace of the host's Lease.
    pub lease_namespace: String,
    /// The Lease's `leaseDurationSeconds`: the operator marks the host
    /// `Ready=False` when a renewal is this late.
    pub lease_duration: Duration,
}

impl ExternalConfig {
    /// Renewals come four times per lease duration (as kubelet's 10 s of
    /// 40 s), so one lost renewal never makes a host late.
    pub fn renew_interval(&self) -> Duration {
        (self.lease_duration / 4).max(Duration::from_millis(500))
    }
}

/// What the main loop reports of the datapath.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub programmed_generation: Option<i64>,
    pub interfaces: Vec<String>,
    /// Why the rule map is not (fully) in force, when it is not.
    pub problem: Option<String>,
}

/// The main loop's ends of the heartbeat task.
#[derive(Debug)]
pub struct Heartbeat {
    report: watch::Sender<Report>,
    /// `spec.interfaces` of the host's ExternalNode; `None` until it was read once.
    pub interfaces: watch::Receiver<Option<Vec<String>>>,
}

impl Heartbeat {
    pub fn spawn(client: Client, host: String, config: ExternalConfig) -> Self {
        let (report, report_rx) = watch::channel(Report::default());
        let (spec_tx, interfaces) = watch::channel(None);
        tokio::spawn(beat(client, host, config, report_rx, spec_tx));
        Heartbeat { report, interfaces }
    }

    pub fn report(&self, report: Report) {
        self.report.send_if_modified(|old| {
            let changed = *old != report;
            *old = report;
            changed
        });
    }
}

async fn beat(
    client: Client,
    host: String,
    config: ExternalConfig,
    report: watch::Receiver<Report>,
    spec_tx: watch::Sender<Option<Vec<String>>>,
) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), &config.lease_namespace);
    let nodes: Api<ExternalNode> = Api::all(client);
    let mut tick = tokio::time::interval(config.renew_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = renew(&leases, &host, config.lease_duration).await {
            tracing::warn!(error = %e, lease = %host, "Lease not renewed; will retry");
        }
        let node = match bounded(nodes.get(&host)).await {
            Ok(node) => node,
            Err(e) => {
                tracing::warn!(error = %e, "reading this host's ExternalNode failed; will retry");
                continue;
            }
        };
        spec_tx.send_if_modified(|old| {
            let new = Some(node.spec.interfaces.clone());
            let changed = *old != new;
            *old = new;
            changed
        });
        let current = node.status.unwrap_or_default();
        let wanted = status_for(&report.borrow(), &current);
        if wanted != current {
            let patch = Patch::Merge(serde_json::json!({ "status": wanted }));
            let params = PatchParams::apply(FIELD_MANAGER);
            match bounded(nodes.patch_status(&host, &params, &patch)).await {
                Ok(_) => tracing::info!(ready = ready_of(&wanted), "ExternalNode status written"),
                Err(e) => tracing::warn!(error = %e, "ExternalNode status not written; will retry"),
            }
        }
    }
}

async fn renew(leases: &Api<Lease>, host: &str, duration: Duration) -> Result<(), String> {
    let spec = LeaseSpec {
        holder_identity: Some(host.to_string()),
        lease_duration_seconds: Some(i32::try_from(duration.as_secs().max(1)).unwrap_or(i32::MAX)),
        renew_time: Some(MicroTime(jiff::Timestamp::now())),
        ..LeaseSpec::default()
    };
    let patch = Patch::Merge(serde_json::json!({ "spec": spec }));
    match bounded(leases.patch(host, &PatchParams::default(), &patch)).await {
        Ok(_) => Ok(()),
        Err(BoundedError::Api(kube::Error::Api(e))) if e.code == 404 => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(host.to_string()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec),
            };
            bounded(leases.create(&PostParams::default(), &lease))
                .await
                .map(drop)
                .map_err(|e| format!("creating the Lease: {e}"))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The status the report calls for. The transition time stays the
/// server's while Ready keeps its value, so an unchanged report writes nothing.
pub fn status_for(report: &Report, current: &ExternalNodeStatus) -> ExternalNodeStatus {
    let (ok, reason, message) = match (&report.problem, report.programmed_generation) {
        (None, Some(g)) => (
            true,
            AGENT_READY,
            format!(
                "generation {g} is in the BPF maps; programs on {}",
                if report.interfaces.is_empty() {
                    "no interface".to_string()
                } else {
                    report.interfaces.join(", ")
                }
            ),
        ),
        (Some(p), _) => (false, "ProgrammingFailed", p.clone()),
        (None, None) => (
            false,
            "NotProgrammed",
            "the agent has not programmed a rule map yet".to_string(),
        ),
    };
    let status = if ok {
        ConditionStatus::True
    } else {
        ConditionStatus::False
    };
    let previous = current.conditions.iter().find(|c| c.type_ == types::READY);
    let since = previous
        .filter(|c| c.status == status && c.reason != LEASE_EXPIRED)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| jiff::Timestamp::now().to_string());
    ExternalNodeStatus {
        observed_generation: current.observed_generation,
        agent_version: Some(env!("CARGO_PKG_VERSION").to_string()),
        interfaces: report.interfaces.clone(),
        programmed_generation: report.programmed_generation,
        conditions: vec![Condition {
            type_: types::READY.into(),
            status,
            reason: reason.into(),
            message,
            observed_generation: None,
            last_transition_time: Some(since),
        }],
    }
}

fn ready_of(status: &ExternalNodeStatus) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == types::READY && c.status == ConditionStatus::True)
}

#[derive(Debug, thiserror::Error)]
enum BoundedError {
    #[error(transparent)]
    Api(kube::Error),
    #[error("no answer from the API server within {0:?}")]
    Timeout(Duration),
}

async fn bounded<T>(
    call: impl std::future::Future<Output = kube::Result<T>>,
) -> Result<T, BoundedError> {
    match tokio::time::timeout(WRITE_TIMEOUT, call).await {
        Ok(r) => r.map_err(BoundedError::Api),
        Err(_) => Err(BoundedError::Timeout(WRITE_TIMEOUT)),
    }
}

/// The host interfaces to protect: those `spec.interfaces` names that
/// exist (the others are logged once per change by the caller), or every
/// interface but loopback and pod veths.
pub fn host_interfaces(spec: &[String], endpoint_prefixes: &[String]) -> Vec<String> {
    let present = crate::attach::interfaces_with_prefix(&[String::new()]);
    if spec.is_empty() {
        present
            .into_iter()
            .filter(|i| i != "lo" && !endpoint_prefixes.iter().any(|p| i.starts_with(p.as_str())))
            .collect()
    } else {
        spec.iter()
            .filter(|i| present.contains(i))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchanged_report_writes_nothing_and_a_lease_expiry_is_overwritten() {
        let report = Report {
            programmed_generation: Some(4),
            interfaces: vec!["eth0".into(), "eth1".into()],
            problem: None,
        };
        let first = status_for(&report, &ExternalNodeStatus::default());
        assert!(ready_of(&first));
        assert_eq!(first.programmed_generation, Some(4));
        assert!(first.conditions[0].message.contains("eth0, eth1"));
        assert_eq!(status_for(&report, &first), first, "nothing to write");

        let mut expired = first.clone();
        expired.conditions[0].status = ConditionStatus::False;
        expired.conditions[0].reason = LEASE_EXPIRED.into();
        let back = status_for(&report, &expired);
        assert!(ready_of(&back), "the agent puts Ready back");
        assert_ne!(back, expired);

        let failed = status_for(
            &Report {
                problem: Some("map bh_policy is full".into()),
                ..report
            },
            &first,
        );
        assert!(!ready_of(&failed));
        assert_eq!(failed.conditions[0].reason, "ProgrammingFailed");
    }
}
