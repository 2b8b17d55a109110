//! SegmentationExceptions in the operator: each one seen becomes a policy
//! change for the compiler (`exception:<name>`, one allow rule expiring at
//! `expiresAt`, only once approved), and its state at the engine's clock
//! becomes its status, an Event on each transition, and the metrics.
//!
//! ```text
//!  watch ─► observe(obj) ─► Change::UpsertPolicy / DeletePolicy ─► compiler
//!  engine clock ─► write_statuses(now): Pending → Active → Expired (Refused)
//!                       status, Events, bulkhead_operator_exceptions{state}
//! ```
//!
//! The decisions are `bulkhead_policy::exception::assess`; this file only
//! keeps what was seen and writes what changed.

use std::collections::BTreeMap;
use std::time::Duration;

use bulkhead_api::condition::{types, Condition, ConditionStatus};
use bulkhead_api::exception::ExceptionState;
use bulkhead_api::{SegmentationException, SegmentationExceptionSpec, SegmentationExceptionStatus};
use bulkhead_policy::exception::{assess, policy_name};
use bulkhead_policy::Change;
use jiff::Timestamp;
use kube::runtime::events::{EventType, Recorder};
use kube::{Client, ResourceExt};

use crate::metrics::{GateLabel, Metrics};
use crate::status::{exception_event, write_status};

#[derive(Clone, Debug)]
struct Seen {
    spec: SegmentationExceptionSpec,
    created: Timestamp,
    generation: Option<i64>,
}

/// The exceptions seen, and what was last written about them.
#[derive(Debug)]
pub struct Exceptions {
    max: Duration,
    seen: BTreeMap<String, Seen>,
    written: BTreeMap<String, SegmentationExceptionStatus>,
    states: BTreeMap<String, ExceptionState>,
}

impl Exceptions {
    /// No exception seen yet; none may run longer than `max` after its request.
    pub fn new(max: Duration) -> Self {
        Self {
            max,
            seen: BTreeMap::new(),
            written: BTreeMap::new(),
            states: BTreeMap::new(),
        }
    }

    /// The exception as it is now: the change that compiles it (or withdraws it).
    pub fn observe(&mut self, obj: &SegmentationException) -> Change {
        let name = obj.name_any();
        // A missing creationTimestamp (never from the API server) counts
        // from now: the bound still holds from the operator's view.
        let created = obj
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or_else(Timestamp::now, |t| t.0);
        let seen = Seen {
            spec: obj.spec.clone(),
            created,
            generation: obj.metadata.generation,
        };
        // The compiled policy does not depend on the clock (see assess).
        let policy = assess(&name, &seen.spec, created, created, self.max).policy;
        self.seen.insert(name.clone(), seen);
        match policy {
            Some(spec) => Change::UpsertPolicy(policy_name(&name), spec),
            None => Change::DeletePolicy(policy_name(&name)),
        }
    }

    /// The exception is gone: withdraw its policy.
    pub fn forget(&mut self, name: &str) -> Change {
        self.seen.remove(name);
        self.written.remove(name);
        self.states.remove(name);
        Change::DeletePolicy(policy_name(name))
    }

    /// The next `expiresAt` after `now`: when a state changes by the clock alone.
    pub fn next_change(&self, now: Timestamp) -> Option<Timestamp> {
        let times = self.seen.values();
        let times = times.filter_map(|s| s.spec.expires_at.parse::<Timestamp>().ok());
        times.filter(|t| *t > now).min()
    }

    /// Each exception's state at `now`: its status (written when it
    /// changed), an Event when its state moved, and the state gauges.
    pub async fn write_statuses(
        &mut self,
        client: &Client,
        recorder: &Recorder,
        now: Timestamp,
        metrics: &Metrics,
    ) {
        let mut counts: BTreeMap<ExceptionState, i64> = BTreeMap::new();
        for (name, seen) in &self.seen {
            let a = assess(name, &seen.spec, seen.created, now, self.max);
            *counts.entry(a.state).or_default() += 1;
            let status = status_of(name, seen, a.state, &a.message, a.policy.is_some());
            let written = write_status::<SegmentationException>(
                &mut self.written,
                client,
                name,
                status,
                metrics,
            );
            if let Err(e) = written.await {
                metrics.error("segmentationexception");
                tracing::warn!(exception = name, error = %e, "status not written");
            }
            if self.states.insert(name.clone(), a.state) == Some(a.state) {
                continue;
            }
            let (type_, reason) = match a.state {
                ExceptionState::Pending => (EventType::Normal, "Requested"),
                ExceptionState::Active => (EventType::Normal, "Enforced"),
                ExceptionState::Expired => (EventType::Normal, "Expired"),
                ExceptionState::Refused => (EventType::Warning, "Refused"),
            };
            if a.state == ExceptionState::Expired {
                metrics.exception_expirations.inc();
            }
            tracing::info!(exception = name, state = a.state.as_str(), "{}", a.message);
            exception_event(recorder, name, type_, reason, a.message, metrics).await;
        }
        for state in [
            ExceptionState::Pending,
            ExceptionState::Active,
            ExceptionState::Expired,
            ExceptionState::Refused,
        ] {
            let label = GateLabel {
                state: state.as_str().into(),
            };
            let count = counts.get(&state).copied().unwrap_or(0);
            metrics.exceptions.get_or_create(&label).set(count);
        }
    }
}

fn status_of(
    name: &str,
    seen: &Seen,
    state: ExceptionState,
    message: &str,
    compiled: bool,
) -> SegmentationExceptionStatus {
    let ready = Condition {
        type_: types::READY.into(),
        status: if state == ExceptionState::Active {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        },
        reason: state.as_str().into(),
        message: message.into(),
        observed_generation: seen.generation,
        last_transition_time: None,
    };
    SegmentationExceptionStatus {
        observed_generation: seen.generation,
        state: Some(state),
        message: Some(message.into()),
        policy: compiled.then(|| policy_name(name)),
        conditions: vec![ready],
    }
}
