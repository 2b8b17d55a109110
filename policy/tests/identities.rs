//! The identity invariants, over random sequences of pods coming and going,
//! the clock moving, restarts (with a new shard count: an upgrade) and
//! failovers to a standby that numbered everything its own way:
//!
//! - a label set keeps its number for as long as it exists anywhere;
//! - a released number is not given to a different label set within the
//!   quarantine, and a label set that returns within it gets its number back;
//! - what a restart rebuilds from the published shards is exactly the
//!   allocation that was running.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use bulkhead_api::Labels;
use bulkhead_policy::snapshot::{Pod, PodKey};
use bulkhead_policy::{Change, CompileOptions, Compiler, IdentityAllocation, Snapshot};
use jiff::Timestamp;
use proptest::prelude::*;
use support::*;

const QUARANTINE: Duration = Duration::from_secs(3600);
const PODS: usize = 6;
const SETS: usize = 5;
const START: i64 = 1_800_000_000;

#[derive(Clone, Debug)]
enum Op {
    /// Pod `i` now has label set `j`.
    Set(usize, usize),
    Delete(usize),
    /// The clock moves on by this many seconds.
    Advance(u32),
    /// The operator restarts with this many shards, from the shards only.
    Restart(u32),
    /// A standby that numbered the same cluster its own way takes over.
    Failover,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..PODS, 0..SETS).prop_map(|(i, j)| Op::Set(i, j)),
        3 => (0..PODS).prop_map(Op::Delete),
        2 => (0u32..5400).prop_map(Op::Advance),
        1 => (1u32..5).prop_map(Op::Restart),
        1 => Just(Op::Failover),
    ]
}

fn options(shards: u32) -> CompileOptions {
    CompileOptions {
        identity_shards: shards,
        identity_quarantine: QUARANTINE,
        ..CompileOptions::default()
    }
}

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).expect("test time")
}

fn base() -> Snapshot {
    World::new()
        .ns("prod", &[("env", "prod")])
        .node("n1", "192.168.0.1", &[])
        .mapping("app-env", APP_ENV_MAPPING)
        .snap
}

fn pod(i: usize, set: usize) -> (PodKey, Pod) {
    let pod = Pod {
        labels: labels(&[("app", &format!("app-{set}"))]),
        node: Some("n1".into()),
        addresses: addrs(&format!("10.0.0.{}", i + 1)),
        host_network: false,
        ..Pod::default()
    };
    (PodKey::new("prod", format!("p{i}")), pod)
}

/// What the operator does on start-up and on winning the Lease: the
/// allocation from the shards, its clock moved to the present.
fn from_shards(compiler: &Compiler, now: Timestamp) -> IdentityAllocation {
    let mut alloc = IdentityAllocation::from_identity_maps(&compiler.output().identity_maps);
    alloc.advance(now, QUARANTINE);
    alloc
}

/// Who held each number, and until when.
#[derive(Debug, Default)]
struct History {
    /// number → (label set, released at; `None` while in use)
    holders: BTreeMap<u32, Vec<(Labels, Option<i64>)>>,
    live: BTreeMap<Labels, u32>,
}

impl History {
    /// Checks the allocation now in force against what came before, then
    /// records it.
    fn observe(&mut self, now: i64, live: BTreeMap<Labels, u32>) -> Result<(), TestCaseError> {
        for (labels, id) in &live {
            if let Some(old) = self.live.get(labels) {
                prop_assert_eq!(old, id, "{:?} was renumbered while in use", labels);
                continue;
            }
            // A label set (re)appearing: its number's previous holders.
            for (holder, released) in self.holders.get(id).into_iter().flatten() {
                let released = released.unwrap_or(now);
                if holder != labels {
                    prop_assert!(
                        now - released >= QUARANTINE.as_secs() as i64,
                        "{} went to {:?} {}s after {:?} released it",
                        id,
                        labels,
                        now - released,
                        holder
                    );
                }
            }
            // Returning within the quarantine: its own number back.
            let recent = self.holders.iter().find_map(|(n, hs)| {
                hs.iter()
                    .any(|(h, r)| {
                        h == labels && r.is_some_and(|r| now - r < QUARANTINE.as_secs() as i64)
                    })
                    .then_some(*n)
            });
            if let Some(old) = recent {
                prop_assert_eq!(old, *id, "{:?} came back with a new number", labels);
            }
            self.holders
                .entry(*id)
                .or_default()
                .push((labels.clone(), None));
        }
        for (labels, id) in &self.live {
            if live.get(labels) != Some(id) {
                for h in self.holders.entry(*id).or_default() {
                    if &h.0 == labels && h.1.is_none() {
                        h.1 = Some(now);
                    }
                }
            }
        }
        self.live = live;
        Ok(())
    }
}

fn live(compiler: &Compiler) -> BTreeMap<Labels, u32> {
    let alloc = &compiler.output().allocation;
    alloc.iter().map(|(l, id)| (l.clone(), id)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn identities_never_move_across_restarts_and_failovers(
        shards in 1u32..5,
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let mut now = START;
        let mut shards = shards;
        let mut compiler = Compiler::new(options(shards), IdentityAllocation::default());
        compiler.advance_clock(at(now));
        compiler.load(base());
        let mut history = History::default();
        history.observe(now, live(&compiler))?;
        for op in ops {
            match op {
                Op::Set(i, j) => {
                    let (k, p) = pod(i, j);
                    compiler.apply(Change::UpsertPod(k, p));
                }
                Op::Delete(i) => {
                    compiler.apply(Change::DeletePod(pod(i, 0).0));
                }
                Op::Advance(secs) => {
                    now += i64::from(secs);
                    compiler.advance_clock(at(now));
                }
                Op::Restart(n) => {
                    let restored = from_shards(&compiler, at(now));
                    prop_assert_eq!(
                        &restored,
                        &compiler.output().allocation,
                        "the shards do not carry the allocation"
                    );
                    shards = n;
                    let snapshot = compiler.snapshot().clone();
                    compiler = Compiler::new(options(shards), restored);
                    compiler.load(snapshot);
                }
                Op::Failover => {
                    // The standby saw the same cluster, but its own history:
                    // its numbers are not the leader's.
                    let mut standby = Compiler::new(options(shards), IdentityAllocation::default());
                    standby.advance_clock(at(now));
                    let mut reversed = compiler.snapshot().clone();
                    let pods: Vec<_> = reversed.pods.keys().cloned().collect();
                    reversed.pods.clear();
                    standby.load(reversed.clone());
                    for key in pods.iter().rev() {
                        if let Some(p) = compiler.snapshot().pods.get(key) {
                            standby.apply(Change::UpsertPod(key.clone(), p.clone()));
                        }
                    }
                    standby.reseed(from_shards(&compiler, at(now)));
                    prop_assert_eq!(
                        &standby.output().allocation,
                        &compiler.output().allocation,
                        "the standby took over with other numbers"
                    );
                    compiler = standby;
                }
            }
            history.observe(now, live(&compiler))?;
        }
    }
}

/// Defect 1, the first half: a number released before a restart was handed
/// to a different label set after it (the allocation restarted at max + 1).
#[test]
fn defect_1_identity_numbers_are_not_reused_after_a_restart() {
    let mut compiler = Compiler::new(options(4), IdentityAllocation::default());
    compiler.load(base());
    let (a, pa) = pod(0, 0);
    let (b, pb) = pod(1, 1);
    compiler.apply(Change::UpsertPod(a, pa));
    compiler.apply(Change::UpsertPod(b.clone(), pb));
    let set = |j: usize| {
        let mut l = labels(&[("app", &format!("app-{j}"))]);
        l.insert("env".into(), "prod".into());
        l
    };
    let released = compiler.output().allocation.get(&set(1)).expect("app-1");
    compiler.apply(Change::DeletePod(b));
    // Restart: only the shards survive.
    let restored = IdentityAllocation::from_identity_maps(&compiler.output().identity_maps);
    let snapshot = compiler.snapshot().clone();
    let mut compiler = Compiler::new(options(4), restored);
    compiler.load(snapshot);
    let (c, pc) = pod(2, 2);
    compiler.apply(Change::UpsertPod(c, pc));
    let fresh = compiler.output().allocation.get(&set(2)).expect("app-2");
    assert_ne!(
        fresh, released,
        "{released} went to another label set right after a restart"
    );
    let (b, pb) = pod(1, 1);
    compiler.apply(Change::UpsertPod(b, pb));
    assert_eq!(
        compiler.output().allocation.get(&set(1)),
        Some(released),
        "app-1 came back within the quarantine with another number"
    );
}
