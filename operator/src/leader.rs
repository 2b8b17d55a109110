//! Leader election with a coordination.k8s.io Lease, so two replicas are safe.
//!
//! The holder renews the lease every `renew`; another replica takes it over
//! only after `duration` without a renewal. Updates go through the lease's
//! resourceVersion, so two replicas racing for an expired lease cannot both
//! win. A replica that fails to renew steps down before its lease expires.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;

use crate::metrics::Metrics;

/// Where the lease lives and who this replica is.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (its pod name, say).
    pub holder: String,
    /// How long a lease lasts without renewal.
    pub duration: Duration,
    /// How often the holder renews.
    pub renew: Duration,
}

/// Runs the election forever, publishing whether this replica leads.
pub async fn run(
    client: Client,
    cfg: LeaseConfig,
    tx: watch::Sender<bool>,
    metrics: std::sync::Arc<Metrics>,
) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut last_renewal: Option<std::time::Instant> = None;
    loop {
        let leading = match try_acquire(&api, &cfg).await {
            Ok(held) => {
                if held {
                    last_renewal = Some(std::time::Instant::now());
                }
                held
            }
            Err(e) => {
                metrics.error("lease");
                tracing::warn!(error = %e, lease = %cfg.name, "lease update failed");
                // Keep leading only while our last renewal is surely still valid.
                last_renewal.is_some_and(|t| t.elapsed() < cfg.duration / 2) && *tx.borrow()
            }
        };
        if *tx.borrow() != leading {
            tracing::info!(holder = %cfg.holder, leading, "leadership changed");
        }
        metrics.leader.set(i64::from(leading));
        let _ = tx.send(leading);
        tokio::time::sleep(cfg.renew).await;
    }
}

async fn try_acquire(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let fresh_spec = |transitions: i32| LeaseSpec {
        holder_identity: Some(cfg.holder.clone()),
        lease_duration_seconds: Some(cfg.duration.as_secs() as i32),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    };
    let Some(mut lease) = api.get_opt(&cfg.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(cfg.name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(fresh_spec(0)),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let ours = spec.holder_identity.as_deref() == Some(cfg.holder.as_str());
    let expired = spec.renew_time.as_ref().is_none_or(|t| {
        let secs = i64::from(spec.lease_duration_seconds.unwrap_or(15));
        t.0.as_second() + secs < now.as_second()
    });
    if !ours && !expired {
        return Ok(false);
    }
    let mut next = if ours {
        spec.clone()
    } else {
        fresh_spec(spec.lease_transitions.unwrap_or(0) + 1)
    };
    next.renew_time = Some(MicroTime(now));
    next.holder_identity = Some(cfg.holder.clone());
    lease.spec = Some(next);
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}
