//! External nodes' heartbeats: a host whose Lease is late is `Ready=False`.
//!
//! ```text
//!  Lease <ns>/<host> (renewed by the host's agent)  ┐  every check interval,
//!  ExternalNode <host>                              ├─ leader only ──► late? ──► ExternalNode status Ready=False
//!                                                   ┘                           NodeRuleMap  status Ready=False
//!                                                                               (reason LeaseExpired)
//! ```
//!
//! As the node lifecycle controller does for kubelets: the agent cannot say
//! it is gone, so the operator says so once `renewTime +
//! leaseDurationSeconds` has passed. The NodeRuleMap's condition makes
//! policies count the host as not programmed (status.rs); the generation it
//! last programmed stays, as it is what the host's pinned maps still enforce.
//! A host that comes back writes its own status over both.

use std::collections::BTreeMap;
use std::time::Duration;

use bulkhead_api::condition::{types, Condition, ConditionStatus};
use bulkhead_api::external_node::LEASE_EXPIRED;
use bulkhead_api::{ExternalNode, ExternalNodeStatus, NodeRuleMap, NodeRuleMapStatus};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;

use crate::call::{bounded, CALL_TIMEOUT};
use crate::Error;

/// The field manager of the operator's heartbeat verdicts.
pub const FIELD_MANAGER: &str = "bulkhead-operator-heartbeat";

/// Why `lease` (or its absence) makes the host late at `now`, if it does.
pub fn late(lease: Option<&Lease>, now: jiff::Timestamp) -> Option<String> {
    let Some(spec) = lease.and_then(|l| l.spec.as_ref()) else {
        return Some("no heartbeat Lease: the host's agent has never reported".into());
    };
    let Some(renewed) = spec.renew_time.as_ref().map(|t| t.0) else {
        return Some("the heartbeat Lease was never renewed".into());
    };
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(40).max(1));
    let age = now.duration_since(renewed);
    (age.as_secs() >= duration).then(|| {
        format!(
            "the heartbeat Lease was last renewed {}s ago ({renewed}), beyond its {duration}s",
            age.as_secs()
        )
    })
}

fn expired(message: &str) -> Condition {
    Condition {
        type_: types::READY.into(),
        status: ConditionStatus::False,
        reason: LEASE_EXPIRED.into(),
        message: message.to_string(),
        observed_generation: None,
        last_transition_time: Some(jiff::Timestamp::now().to_string()),
    }
}

fn marked(conditions: &[Condition]) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == types::READY && c.reason == LEASE_EXPIRED)
}

/// Checks every `interval` while this replica leads.
pub async fn run(
    client: Client,
    namespace: String,
    interval: Duration,
    mut leading: watch::Receiver<bool>,
) {
    loop {
        if *leading.borrow_and_update() {
            if let Err(e) = check(&client, &namespace).await {
                tracing::warn!(error = %e, "external node heartbeats not checked");
            }
            tokio::time::sleep(interval).await;
        } else if leading.changed().await.is_err() {
            return;
        }
    }
}

/// One pass: marks every late host not yet marked.
pub async fn check(client: &Client, namespace: &str) -> Result<usize, Error> {
    let nodes: Api<ExternalNode> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let maps: Api<NodeRuleMap> = Api::all(client.clone());
    let lp = ListParams::default();
    let hosts = bounded("listing ExternalNodes", CALL_TIMEOUT, nodes.list(&lp)).await?;
    if hosts.items.is_empty() {
        return Ok(0);
    }
    let leases: BTreeMap<String, Lease> =
        bounded("listing heartbeat Leases", CALL_TIMEOUT, leases.list(&lp))
            .await?
            .items
            .into_iter()
            .map(|l| (l.name_any(), l))
            .collect();
    let now = jiff::Timestamp::now();
    let params = PatchParams::apply(FIELD_MANAGER);
    let mut newly = 0;
    for host in hosts.items {
        let name = host.name_any();
        let Some(why) = late(leases.get(&name), now) else {
            continue;
        };
        let status = host.status.unwrap_or_default();
        if !marked(&status.conditions) {
            tracing::warn!(host = %name, reason = %why, "external node is late");
            let st = ExternalNodeStatus {
                conditions: vec![expired(&why)],
                ..ExternalNodeStatus::default()
            };
            let patch = Patch::Merge(serde_json::json!({ "status": st }));
            let action = format!("marking ExternalNode {name} Ready=False");
            bounded(
                action,
                CALL_TIMEOUT,
                nodes.patch_status(&name, &params, &patch),
            )
            .await?;
            newly += 1;
        }
        let action = format!("reading NodeRuleMap {name}");
        let Some(map) = bounded(action, CALL_TIMEOUT, maps.get_opt(&name)).await? else {
            continue;
        };
        let conditions = map.status.map(|s| s.conditions).unwrap_or_default();
        if !marked(&conditions) {
            let st = NodeRuleMapStatus {
                conditions: vec![expired(&why)],
                ..NodeRuleMapStatus::default()
            };
            let mut value = serde_json::to_value(&st)
                .map_err(|e| Error::Serialize(format!("NodeRuleMap {name} status"), e))?;
            // A merge patch of only the conditions: the generation the host
            // programmed last stays what its status says.
            if let Some(obj) = value.as_object_mut() {
                obj.retain(|k, _| k == "conditions");
            }
            let patch = Patch::Merge(serde_json::json!({ "status": value }));
            let action = format!("marking NodeRuleMap {name} Ready=False");
            bounded(
                action,
                CALL_TIMEOUT,
                maps.patch_status(&name, &params, &patch),
            )
            .await?;
        }
    }
    Ok(newly)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn lease(renewed: Option<jiff::Timestamp>, seconds: i32) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                renew_time: renewed.map(MicroTime),
                lease_duration_seconds: Some(seconds),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        }
    }

    #[test]
    fn a_host_is_late_once_its_lease_duration_has_passed_since_the_last_renewal() {
        let now: jiff::Timestamp = "2026-01-01T00:01:00Z".parse().expect("time");
        let at = |s: &str| Some(s.parse::<jiff::Timestamp>().expect("time"));
        assert_eq!(
            late(Some(&lease(at("2026-01-01T00:00:55Z"), 10)), now),
            None
        );
        assert_eq!(
            late(Some(&lease(at("2026-01-01T00:00:51Z"), 10)), now),
            None
        );
        let why = late(Some(&lease(at("2026-01-01T00:00:50Z"), 10)), now).expect("late");
        assert!(
            why.contains("10s ago") && why.contains("beyond its 10s"),
            "{why}"
        );
        assert!(late(None, now).expect("late").contains("never reported"));
        assert!(late(Some(&lease(None, 10)), now)
            .expect("late")
            .contains("never renewed"));
    }
}
