//! Leader election with a coordination.k8s.io Lease, so two replicas are safe.
//!
//! The timings follow client-go's leader election:
//!
//! ```text
//!  holder:   renew ─ retry ─ renew ─ retry ─ ✗ ─ ✗ ─ ✗ ─┤ steps down (renew deadline, 10 s)
//!  standby:  sees the record change ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─┤ takes over (lease duration, 15 s)
//! ```
//!
//! - The holder renews every `retry`; every attempt is bounded, and while
//!   leading by what is left of the renew deadline. When it has not renewed
//!   for `renew_deadline` (measured from the start of its last successful
//!   renewal), it stops leading, whether the API server refused, failed or
//!   just never answered.
//! - A standby takes the lease over only after the record has not changed
//!   for `duration` by its own monotonic clock (client-go's observed time),
//!   so clock skew between replicas does not matter. With the renew deadline
//!   shorter than the duration, the old holder has stopped before the
//!   standby starts.
//! - Updates go through the lease's resourceVersion, so two replicas racing
//!   for an expired lease cannot both win.

use std::time::Duration;

use tokio::time::Instant;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;

use crate::call::CALL_TIMEOUT;
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
    /// How long the holder keeps leading without a successful renewal;
    /// shorter than `duration`.
    pub renew_deadline: Duration,
    /// How often the holder renews and a standby tries.
    pub renew: Duration,
}

impl LeaseConfig {
    /// client-go's defaults: 15 s lease, 10 s renew deadline, 2 s retry.
    pub fn new(namespace: String, name: String, holder: String) -> Self {
        Self {
            namespace,
            name,
            holder,
            duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            renew: Duration::from_secs(2),
        }
    }
}

/// The last version of the record this replica saw, and when it first saw it.
#[derive(Debug)]
struct Observed {
    version: (Option<String>, Option<String>),
    since: Instant,
}

/// Runs the election forever, publishing whether this replica leads.
pub async fn run(
    client: Client,
    cfg: LeaseConfig,
    tx: watch::Sender<bool>,
    metrics: std::sync::Arc<Metrics>,
) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut renewed: Option<Instant> = None;
    let mut observed: Option<Observed> = None;
    loop {
        let started = Instant::now();
        let leading_now = *tx.borrow();
        let budget = match renewed.filter(|_| leading_now) {
            Some(t) => cfg
                .renew_deadline
                .saturating_sub(t.elapsed())
                .min(CALL_TIMEOUT),
            None => CALL_TIMEOUT,
        };
        let attempt = tokio::time::timeout(budget, try_acquire(&api, &cfg, &mut observed)).await;
        let leading = match attempt {
            Ok(Ok(held)) => {
                if held {
                    renewed = Some(started);
                }
                held
            }
            failed => {
                metrics.error("lease");
                match failed {
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, lease = %cfg.name, "lease update failed")
                    }
                    _ => {
                        tracing::warn!(lease = %cfg.name, after = ?budget, "lease update got no answer")
                    }
                }
                leading_now && renewed.is_some_and(|t| t.elapsed() < cfg.renew_deadline)
            }
        };
        if leading_now != leading {
            tracing::info!(holder = %cfg.holder, leading, "leadership changed");
        }
        metrics.leader.set(i64::from(leading));
        let _ = tx.send(leading);
        let pause = match renewed.filter(|_| leading) {
            // Wake up in time to step down if the next renewals fail fast.
            Some(t) => cfg
                .renew
                .min(cfg.renew_deadline.saturating_sub(t.elapsed())),
            None => cfg.renew,
        };
        tokio::time::sleep(pause.max(Duration::from_millis(10))).await;
    }
}

async fn try_acquire(
    api: &Api<Lease>,
    cfg: &LeaseConfig,
    observed: &mut Option<Observed>,
) -> Result<bool, kube::Error> {
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
    let version = (
        spec.holder_identity.clone(),
        spec.renew_time.as_ref().map(|t| t.0.to_string()),
    );
    if observed.as_ref().is_none_or(|o| o.version != version) {
        *observed = Some(Observed {
            version,
            since: Instant::now(),
        });
    }
    let duration = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(cfg.duration, Duration::from_secs);
    let vacant = spec.holder_identity.as_deref().is_none_or(str::is_empty);
    let expired = vacant
        || observed
            .as_ref()
            .is_some_and(|o| o.since.elapsed() > duration);
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use tokio::time::timeout;

    use super::*;
    use crate::fixtures::FakeApi;

    const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/ns/leases/lease";

    fn start(holder: &str) -> (FakeApi, LeaseConfig, watch::Receiver<bool>) {
        let (client, api) = FakeApi::start();
        let cfg = LeaseConfig::new("ns".into(), "lease".into(), holder.into());
        let (tx, rx) = watch::channel(false);
        let metrics = Arc::new(Metrics::register(&mut Default::default()));
        tokio::spawn(run(client, cfg.clone(), tx, metrics));
        (api, cfg, rx)
    }

    fn held_by(api: &FakeApi, holder: &str) {
        let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "lease", "namespace": "ns"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                     "renewTime": Timestamp::now().to_string()}});
        api.put(LEASE, lease);
    }

    /// Defect 2: the Lease call of a holder hung (a paused API server) and
    /// the holder went on believing it led after its lease had expired.
    #[tokio::test(start_paused = true)]
    async fn defect_2_a_holder_whose_lease_renewal_hangs_steps_down_within_the_renew_deadline() {
        let (api, cfg, mut rx) = start("me");
        let won = timeout(Duration::from_secs(5), rx.wait_for(|l| *l))
            .await
            .map(drop);
        assert!(won.is_ok(), "did not take a vacant lease");
        let renewals = api.take_calls().len();
        assert!(renewals >= 2, "get and create: {renewals}");
        api.stall(|c| c.path.contains("/leases"));
        let stalled = Instant::now();
        let stepped_down = timeout(cfg.duration, rx.wait_for(|l| !*l)).await.map(drop);
        assert!(
            stepped_down.is_ok(),
            "still leading after the lease expired"
        );
        assert!(
            stalled.elapsed() <= cfg.renew_deadline,
            "stepped down only after {:?}",
            stalled.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_standby_waits_for_the_record_to_stay_unchanged_for_a_lease_duration() {
        let (client, api) = FakeApi::start();
        held_by(&api, "other");
        // The holder renews for a minute: the standby never leads.
        let renewing = {
            let api = api.clone();
            tokio::spawn(async move {
                for _ in 0..30 {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    held_by(&api, "other");
                }
            })
        };
        let cfg = LeaseConfig::new("ns".into(), "lease".into(), "me".into());
        let (tx, mut rx) = watch::channel(false);
        let metrics = Arc::new(Metrics::register(&mut Default::default()));
        tokio::spawn(run(client, cfg.clone(), tx, metrics));
        let early = timeout(Duration::from_secs(59), rx.wait_for(|l| *l))
            .await
            .map(drop);
        assert!(early.is_err(), "took over a lease that was being renewed");
        let _ = renewing.await;
        // Then the holder is gone: the standby takes over one lease duration
        // (and a retry) after the last change it saw.
        let gone = Instant::now();
        let took = timeout(cfg.duration * 2, rx.wait_for(|l| *l))
            .await
            .map(drop);
        assert!(took.is_ok(), "never took over an abandoned lease");
        assert!(
            gone.elapsed() >= cfg.duration - cfg.renew,
            "{:?}",
            gone.elapsed()
        );
    }
}
