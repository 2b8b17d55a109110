//! The propagation benchmark: how long a change takes to reach packets.
//!
//! ```text
//!  t0 ─ kubectl apply / label ─► API server ─watch─► operator ─SSA─► NodeRuleMap, IdentityMap
//!   │          │ returned                                                 │ published (watch)
//!   │          ▼                                                          ▼
//!   │                              agent ─► BPF maps ─► status.programmedGeneration (watch)
//!   │                                          │
//!   └──────── prober in the client pod: a new UDP flow every interval ──► first request whose
//!                                              fate is the new verdict and stays so: enforced
//! ```
//!
//! Each trial flips the client → server flow (allowed ↔ denied), so every
//! trial starts from the state the previous one settled in. Latencies are
//! from `t0`, taken just before kubectl starts, on CLOCK_MONOTONIC, which
//! the prober in the pod's namespace shares.

mod prober;
mod report;
mod scenario;
mod watch;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::kubectl::Kubectl;
use crate::kubelet;
use crate::lab::Lab;
pub use prober::{now_ns, Prober, ProberConfig, Sample};
pub use report::{percentile, table};
use watch::{Seen, Watch};

/// What to measure.
#[derive(Clone, Debug)]
pub struct Config {
    pub nodes: u8,
    pub pods_per_node: u8,
    /// Trials of each kind.
    pub trials: usize,
    pub prober: ProberConfig,
    /// How long the new verdict must hold before a trial counts as settled.
    pub settle: Duration,
    /// A trial that has not settled after this long is recorded as such.
    pub trial_timeout: Duration,
    pub verbose: bool,
}

/// The two kinds of change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Change {
    /// `kubectl apply` of the server's policy with the rule's action flipped.
    Policy,
    /// `kubectl label` of the client pod in or out of the policy's peers.
    Label,
}

/// One trial, every time in nanoseconds from `t0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Trial {
    pub change: Change,
    pub to_allowed: bool,
    /// kubectl returned.
    pub applied: u64,
    /// The changed object (policy or pod) reached watchers: the API server
    /// had committed it.
    pub committed: Option<u64>,
    /// The server node's NodeRuleMap or an IdentityMap shard changed.
    pub published: Option<u64>,
    /// The server node's agent reported the new generation programmed
    /// (`None` when the change did not touch that node's rule map).
    pub programmed: Option<u64>,
    /// The first request whose fate is the new verdict, for good.
    /// `None`: not settled within the trial timeout.
    pub enforced: Option<u64>,
}

/// Everything measured on one lab.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LabResult {
    pub nodes: u8,
    pub pods_per_node: u8,
    pub startup: Duration,
    pub trials: Vec<Trial>,
    /// Requests sent, and how many of them went unanswered.
    pub probes: usize,
    pub unanswered: usize,
}

/// Builds the lab, runs the trials, tears the lab down (also on error).
pub fn measure(config: &Config) -> Result<LabResult> {
    let started = Instant::now();
    let mut lab = Lab::start(scenario::lab_spec(
        config.nodes,
        config.pods_per_node,
        config.verbose,
    ))?;
    let startup = started.elapsed();
    say(
        config,
        &format!(
            "lab of {} nodes x {} pods up in {:.1}s",
            config.nodes,
            config.pods_per_node,
            startup.as_secs_f64()
        ),
    );
    lab.listen(
        scenario::NAMESPACE,
        scenario::SERVER,
        &[],
        &[scenario::PORT],
    )?;
    let admin = lab.kubectl();
    admin.apply(&scenario::background())?;
    admin.apply(&scenario::server_policy(true))?;
    lab.sync_agents(Duration::from_secs(120))?;
    let client = lab.pod(scenario::NAMESPACE, scenario::CLIENT)?.clone();
    let server = lab.pod(scenario::NAMESPACE, scenario::SERVER)?.clone();
    let mut run = Run {
        rule_map: Watch::start(
            &admin,
            &["noderulemap", &server.node],
            "{.metadata.generation} {.status.programmedGeneration}",
        )?,
        shards: Watch::start(
            &admin,
            &["identitymaps"],
            "{.metadata.name} {.metadata.resourceVersion}",
        )?,
        policy: Watch::start(
            &admin,
            &["segmentationpolicy", scenario::POLICY],
            "{.metadata.resourceVersion}",
        )?,
        pod: Watch::start(
            &admin,
            &["pod", "-n", scenario::NAMESPACE, scenario::CLIENT],
            "{.metadata.resourceVersion}",
        )?,
        prober: Prober::start(
            lab.state(),
            &client.netns,
            IpAddr::V4(server.address),
            scenario::PORT,
            config.prober,
        )?,
        admin,
        config: config.clone(),
        trials: Vec::new(),
    };
    run.settle_initial()?;
    for i in 0..config.trials {
        let allow = i % 2 == 1;
        run.trial(Change::Policy, allow, |k| {
            k.apply(&scenario::server_policy(allow)).map(drop)
        })?;
    }
    for i in 0..config.trials {
        let allow = i % 2 == 1;
        let app = if allow {
            scenario::CLIENT_APP
        } else {
            scenario::CLIENT_APP_OFF
        };
        let pod = ["pod", "-n", scenario::NAMESPACE, scenario::CLIENT];
        run.trial(Change::Label, allow, |k| {
            kubelet::relabel(k, &pod, &[("app", Some(app))])
        })?;
    }
    run.prober.refresh()?;
    let probes = run.prober.known().count();
    let unanswered = run.prober.known().filter(|s| !s.answered).count();
    run.prober.stop()?;
    Ok(LabResult {
        nodes: config.nodes,
        pods_per_node: config.pods_per_node,
        startup,
        trials: run.trials,
        probes,
        unanswered,
    })
}

fn say(config: &Config, what: &str) {
    if config.verbose {
        eprintln!("bulkhead-propagation: {what}");
    }
}

struct Run {
    admin: Kubectl,
    config: Config,
    rule_map: Watch,
    shards: Watch,
    /// The objects the trials change.
    policy: Watch,
    pod: Watch,
    prober: Prober,
    trials: Vec<Trial>,
}

impl Run {
    /// Waits until the client's requests are answered (the policy admits it).
    fn settle_initial(&mut self) -> Result<()> {
        let t0 = now_ns();
        match self.wait_enforced(t0, true, Duration::from_secs(60))? {
            Some(_) => Ok(()),
            None => Err(Error::Timeout {
                what: "the client's requests to be answered before the first trial".into(),
                seconds: 60,
            }),
        }
    }

    fn trial(
        &mut self,
        change: Change,
        to_allowed: bool,
        act: impl FnOnce(&Kubectl) -> Result<()>,
    ) -> Result<()> {
        self.wait_programmed()?;
        let t0 = now_ns();
        act(&self.admin)?;
        let applied = now_ns() - t0;
        let enforced = self.wait_enforced(t0, to_allowed, self.config.trial_timeout)?;
        let (published, programmed) = stages(&self.rule_map.lines(), &self.shards.lines(), t0);
        let changed = match change {
            Change::Policy => &self.policy,
            Change::Label => &self.pod,
        };
        let committed = changed
            .lines()
            .iter()
            .find(|s| s.at_ns >= t0)
            .map(|s| s.at_ns - t0);
        let trial = Trial {
            change,
            to_allowed,
            applied,
            committed,
            published,
            programmed,
            enforced,
        };
        let ms = |v: Option<u64>| v.map_or("-".into(), |v| format!("{:.1}", v as f64 / 1e6));
        say(
            &self.config,
            &format!(
                "{change:?} {} to {}: applied {} committed {} published {} programmed {} enforced {} ms",
                self.trials.len() % self.config.trials + 1,
                if to_allowed { "allowed" } else { "denied" },
                ms(Some(applied)),
                ms(committed),
                ms(published),
                ms(programmed),
                ms(enforced),
            ),
        );
        self.trials.push(trial);
        Ok(())
    }

    /// The time from `t0` to the first request of the run of `allowed`
    /// outcomes that has held for the settle time; `None` after `timeout`.
    fn wait_enforced(&mut self, t0: u64, allowed: bool, timeout: Duration) -> Result<Option<u64>> {
        let deadline = Instant::now() + timeout;
        let settle = u64::try_from(self.config.settle.as_nanos()).unwrap_or(u64::MAX);
        loop {
            self.prober.refresh()?;
            if let Some(first) = settled_since(self.prober.known(), t0, allowed, settle) {
                return Ok(Some(first - t0));
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
            std::thread::sleep(self.config.prober.interval);
        }
    }

    /// Waits (briefly) until the server node's agent has programmed the
    /// rule map's generation, so no trial starts while one is in flight.
    fn wait_programmed(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let lines = self.rule_map.lines();
            let done = lines
                .last()
                .and_then(|l| rule_map_line(&l.line))
                .is_some_and(|(generation, programmed)| programmed == Some(generation));
            if done {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

/// The send time of the first request (sent at or after `t0`) from which
/// every known request's fate is `allowed`, once those span `settle`.
pub fn settled_since(
    known: impl DoubleEndedIterator<Item = Sample>,
    t0: u64,
    allowed: bool,
    settle: u64,
) -> Option<u64> {
    let mut run: Option<(u64, u64)> = None; // (first, last) send times of the run
    for sample in known.rev().take_while(|s| s.send_ns >= t0) {
        if sample.answered != allowed {
            break;
        }
        run = Some(match run {
            None => (sample.send_ns, sample.send_ns),
            Some((_, last)) => (sample.send_ns, last),
        });
    }
    let (first, last) = run?;
    (last - first >= settle).then_some(first)
}

/// `generation programmedGeneration` from the rule map watch.
fn rule_map_line(line: &str) -> Option<(i64, Option<i64>)> {
    let mut fields = line.split_whitespace();
    let generation = fields.next()?.parse().ok()?;
    Some((generation, fields.next().and_then(|p| p.parse().ok())))
}

/// When after `t0` the server node's rule map or a shard first changed,
/// and when that node's agent reported the changed rule map programmed.
fn stages(rule_map: &[Seen], shards: &[Seen], t0: u64) -> (Option<u64>, Option<u64>) {
    let before = rule_map
        .iter()
        .rev()
        .find(|s| s.at_ns < t0)
        .and_then(|s| rule_map_line(&s.line))
        .map_or(0, |(g, _)| g);
    let after = || {
        rule_map
            .iter()
            .filter(|s| s.at_ns >= t0)
            .filter_map(|s| rule_map_line(&s.line).map(|l| (s.at_ns, l)))
    };
    let rule_map_changed = after().find(|(_, (g, _))| *g > before).map(|(at, _)| at);
    let programmed = after()
        .find(|(_, (g, p))| *g > before && *p == Some(*g))
        .map(|(at, _)| at - t0);
    let shard_changed = shards.iter().find(|s| s.at_ns >= t0).map(|s| s.at_ns);
    let published = [rule_map_changed, shard_changed]
        .into_iter()
        .flatten()
        .min()
        .map(|at| at - t0);
    (published, programmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(outcomes: &[(u64, bool)]) -> Vec<Sample> {
        outcomes
            .iter()
            .map(|&(send_ns, answered)| Sample { send_ns, answered })
            .collect()
    }

    #[test]
    fn enforcement_is_the_start_of_the_last_run_of_the_new_verdict_once_it_has_held() {
        // Denied from t=30 on, but one request at 40 was still answered.
        let s = samples(&[
            (0, true),
            (10, true),
            (20, true),
            (30, false),
            (40, true),
            (50, false),
            (60, false),
            (70, false),
        ]);
        assert_eq!(settled_since(s.iter().copied(), 5, false, 20), Some(50));
        assert_eq!(settled_since(s.iter().copied(), 5, false, 30), None);
        // Nothing before t0 counts, even when it already had the new fate.
        assert_eq!(settled_since(s.iter().copied(), 55, false, 10), Some(60));
        assert_eq!(settled_since(s.iter().copied(), 5, true, 0), None);
    }

    #[test]
    fn stages_are_the_first_changes_after_t0() {
        let seen = |at_ns, line: &str| Seen {
            at_ns,
            line: line.into(),
        };
        let rule_map = [
            seen(1, "4 4"),
            seen(100, "5 4"),
            seen(150, "5 5"),
            seen(300, "6 5"),
        ];
        let shards = [seen(1, "shard-0 10"), seen(120, "shard-3 11")];
        assert_eq!(stages(&rule_map, &shards, 50), (Some(50), Some(100)));
        assert_eq!(stages(&rule_map, &shards, 110), (Some(10), None));
        assert_eq!(stages(&rule_map, &[], 400), (None, None));
    }
}
