//! Cluster mode: this node's NodeRuleMap and the IdentityMap shards come
//! from the API server; the agent programs them and reports, in the rule
//! map's status, the generation its maps hold.
//!
//! The watch on the rule map uses a field selector on `metadata.name`, which
//! is all the agent's RBAC lets it read. When the API server goes away the
//! watches retry with backoff and the BPF maps keep the last good content;
//! when it returns the watches re-list and the agent catches up.
//!
//! Services are watched cluster-wide (list and watch, no more) only to name
//! the Service of flow records (`services`); nothing waits on that watch.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bulkhead_api::watch::{Bookkeeping, Seen};
use bulkhead_api::{IdentityMap, IdentityMapSpec, NodeRuleMap, NodeRuleMapStatus};
use futures::{StreamExt, TryStreamExt};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use tokio::sync::mpsc;

use crate::datapath::{Datapath, InterfaceConfig};
use crate::desired::Desired;
use crate::error::{Error, Result};
use crate::flows::Resolver;
use crate::loader::LoadOptions;
use crate::outputs::{OutputConfig, Outputs};

pub mod external;
pub mod hits;
mod services;
mod status;

pub use external::ExternalConfig;
pub use status::{StatusWriter, FIELD_MANAGER};

/// What cluster mode needs besides the client.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's name: the NodeRuleMap to enforce.
    pub node: String,
    pub interfaces: InterfaceConfig,
    pub poll_interval: Duration,
    /// How often rule hits are read and, when they changed, reported.
    pub hits_interval: Duration,
    pub outputs: OutputConfig,
    pub detach_on_exit: bool,
    /// Set on a host outside the cluster (`--external-node`): a heartbeat
    /// Lease, the ExternalNode's status, and its interfaces.
    pub external: Option<ExternalConfig>,
}

enum Update {
    RuleMap(Box<NodeRuleMap>),
    RuleMapGone,
    RuleMapListed,
    /// A shard's content and its `metadata.generation`.
    Shard(String, IdentityMapSpec, i64),
    ShardGone(String),
    ShardsListed,
}

/// Runs until SIGINT or SIGTERM.
pub async fn run(client: Client, config: Config, load: LoadOptions) -> Result<()> {
    let mut datapath = Datapath::open(&load)?;
    let (tx, mut rx) = mpsc::channel(256);
    watch_rule_map(client.clone(), config.node.clone(), tx.clone());
    watch_shards(client.clone(), tx);

    let mut rule_map: Option<NodeRuleMap> = None;
    let mut shards: BTreeMap<String, (IdentityMapSpec, i64)> = BTreeMap::new();
    let (mut rule_map_listed, mut shards_listed) = (false, false);
    let mut programmed: Option<(i64, NodeRuleMap, Vec<IdentityMapSpec>)> = None;
    let mut outputs = Outputs::start(&config.node, &config.outputs)?;
    // Service names for flow records. An external host's credential reads
    // only its own objects, and it reaches no ClusterIP of its own accord.
    if config.external.is_none() {
        outputs.set_services(services::spawn(client.clone()));
    }
    let mut tick = tokio::time::interval(config.poll_interval);
    let mut hits_tick = tokio::time::interval(config.hits_interval);
    hits_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut hit_report = hits::HitReport::default();
    // The hits in the last status handed to the writer.
    let mut rule_hits: Vec<bulkhead_api::hits::NodeRuleHits> = Vec::new();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::invalid("agent", "signals", e.to_string()))?;
    let status_writer = StatusWriter::spawn(client.clone(), config.node.clone());
    let mut last_good: Option<NodeRuleMapStatus> = None;
    // What this agent last wrote to its rule map's status, to write again
    // when the operator marked the map LeaseExpired while this agent lived.
    let mut last_written: Option<NodeRuleMapStatus> = None;
    let mut interfaces = config.interfaces.clone();
    let heartbeat = config
        .external
        .clone()
        .map(|e| external::Heartbeat::spawn(client.clone(), config.node.clone(), e));
    let mut report = external::Report::default();
    // Whether an update arrived since the last look (timer ticks alone
    // change nothing to program).
    let mut updated = false;
    // When the oldest update not yet programmed arrived.
    let mut pending_since: Option<Instant> = None;
    // A failed pass is retried with the same content (the kernel may have
    // refused it for a passing reason), with backoff.
    let mut retry = Retry::default();
    loop {
        tokio::select! {
            update = rx.recv() => match update {
                Some(u) => {
                    updated = true;
                    pending_since.get_or_insert_with(Instant::now);
                    reassert(&u, last_written.as_ref(), &status_writer);
                    apply(u, &mut rule_map, &mut shards, &mut rule_map_listed, &mut shards_listed)
                }
                None => break,
            },
            _ = tick.tick() => {}
            _ = hits_tick.tick() => {
                let rules = programmed.as_ref().map(|(_, m, _)| m.spec.rules.as_slice());
                if let Some(rules) = rules {
                    let fresh = read_hits(&mut datapath, &mut hit_report, rules, &outputs);
                    if let (Some(fresh), Some(last)) = (fresh, &mut last_written) {
                        if fresh != rule_hits {
                            rule_hits = fresh;
                            last.rule_hits = rule_hits.clone();
                            status_writer.set(last.clone());
                        }
                    }
                }
                continue;
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
        while let Ok(u) = rx.try_recv() {
            updated = true;
            pending_since.get_or_insert_with(Instant::now);
            reassert(&u, last_written.as_ref(), &status_writer);
            apply(
                u,
                &mut rule_map,
                &mut shards,
                &mut rule_map_listed,
                &mut shards_listed,
            );
        }
        // Program only from a complete picture: a partial shard list would
        // turn known peers into `world`.
        let due = updated || retry.due(Instant::now());
        if let (true, true, true, Some(map)) = (due, rule_map_listed, shards_listed, &rule_map) {
            updated = false;
            let generation = map.metadata.generation.unwrap_or(0);
            let shard_specs: Vec<IdentityMapSpec> =
                shards.values().map(|(s, _)| s.clone()).collect();
            let shard_generations: BTreeMap<String, i64> =
                shards.iter().map(|(n, (_, g))| (n.clone(), *g)).collect();
            let unchanged = programmed.as_ref().is_some_and(|(g, m, s)| {
                *g == generation && m.spec == map.spec && *s == shard_specs
            });
            if unchanged {
                retry = Retry::default();
            } else {
                let t0 = Instant::now();
                let built = Desired::build(&map.spec, &shard_specs);
                let build_time = t0.elapsed();
                let result = built.and_then(|d| datapath.program(&d));
                // Events still in the ring buffer were judged under the old maps.
                outputs.tick(&mut datapath);
                let status = match result {
                    Ok(stats) => {
                        let t = &outputs.telemetry;
                        t.programming.observe(t0.elapsed().as_secs_f64());
                        t.generation.set(generation);
                        t.observe_fill(&stats.fill);
                        t.ready.store(true, std::sync::atomic::Ordering::Relaxed);
                        outputs.set_resolver(Resolver::new(&config.node, &map.spec, &shard_specs));
                        tracing::info!(
                            generation,
                            kernel_generation = stats.generation,
                            build_ms = build_time.as_secs_f64() * 1e3,
                            program_ms = (t0.elapsed() - build_time).as_secs_f64() * 1e3,
                            since_update_ms =
                                pending_since.map_or(0.0, |t| t.elapsed().as_secs_f64() * 1e3),
                            "programmed"
                        );
                        programmed = Some((generation, map.clone(), shard_specs));
                        retry = Retry::default();
                        let s = status::programmed(generation, map, &stats, &shard_generations);
                        last_good = Some(s.clone());
                        report.programmed_generation = Some(generation);
                        report.problem = None;
                        s
                    }
                    Err(e) => {
                        outputs.telemetry.programming_failures.inc();
                        // The pass wrote only the slot not in force: what
                        // enforces is the last good generation, whole.
                        let wait = retry.failed(Instant::now());
                        tracing::error!(error = %e, retry_in = ?wait, "programming failed; the previous maps stay in force");
                        report.problem =
                            Some(format!("generation {generation} was not programmed: {e}"));
                        status::failed(last_good.as_ref(), generation, &e)
                    }
                };
                let mut status = status;
                status.rule_hits = rule_hits.clone();
                last_written = Some(status.clone());
                status_writer.set(status);
            }
            pending_since = None;
        }
        if let Some(hb) = &heartbeat {
            // Attach nothing before the ExternalNode says which interfaces:
            // pinned links of an earlier run keep enforcing meanwhile.
            let Some(spec) = hb.interfaces.borrow().clone() else {
                outputs.tick(&mut datapath);
                continue;
            };
            let chosen = external::host_interfaces(&spec, &config.interfaces.endpoint_prefixes);
            if chosen != interfaces.host_interfaces {
                let missing: Vec<&String> = spec.iter().filter(|i| !chosen.contains(i)).collect();
                if !missing.is_empty() {
                    tracing::warn!(
                        ?missing,
                        "interfaces in spec.interfaces that this host lacks"
                    );
                }
                tracing::info!(interfaces = ?chosen, "host interfaces");
                interfaces.host_interfaces = chosen;
            }
        }
        match datapath.sync_interfaces(&interfaces) {
            Ok(_) => {
                let attached = crate::attach::interfaces_with_prefix(&interfaces.endpoint_prefixes)
                    .len()
                    + interfaces.host_interfaces.len();
                outputs.telemetry.programs_attached.set(2 * attached as i64);
            }
            Err(e) => tracing::warn!(error = %e, "interfaces"),
        }
        if let Some(hb) = &heartbeat {
            report.interfaces = interfaces.host_interfaces.clone();
            hb.report(report.clone());
        }
        outputs.tick(&mut datapath);
    }
    outputs.shutdown(&mut datapath);
    if config.detach_on_exit {
        datapath.detach_all()?;
    }
    Ok(())
}

/// Reads the hit counters and names them after `rules`; forgets the hits
/// of rules the node no longer carries. `None` when the map cannot be read
/// (logged; the last report stands).
fn read_hits(
    datapath: &mut Datapath,
    report: &mut hits::HitReport,
    rules: &[bulkhead_api::rule_map::CompiledRule],
    outputs: &Outputs,
) -> Option<Vec<bulkhead_api::hits::NodeRuleHits>> {
    let read = match datapath.rule_hits() {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "rule hits not read");
            return None;
        }
    };
    let keep: std::collections::BTreeSet<u32> = rules.iter().map(|r| r.id).collect();
    if read.keys().any(|id| !keep.contains(id)) {
        if let Err(e) = datapath.forget_rule_hits(&keep) {
            tracing::warn!(error = %e, "hits of removed rules not forgotten");
        }
    }
    let entries = report.entries(
        rules,
        &read,
        crate::datapath::monotonic_ns(),
        jiff::Timestamp::now(),
    );
    outputs.telemetry.rule_hits_reads.inc();
    outputs.telemetry.rules_hit.set(entries.len() as i64);
    Some(entries)
}

/// When to program the same content again after a failed pass.
#[derive(Debug, Default)]
struct Retry {
    at: Option<Instant>,
    backoff: Duration,
}

impl Retry {
    const FIRST: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(30);

    fn due(&self, now: Instant) -> bool {
        self.at.is_some_and(|at| now >= at)
    }

    /// Schedules the next try; returns how long until it.
    fn failed(&mut self, now: Instant) -> Duration {
        self.backoff = if self.backoff.is_zero() {
            Self::FIRST
        } else {
            (self.backoff * 2).min(Self::MAX)
        };
        self.at = Some(now + self.backoff);
        self.backoff
    }
}

/// The operator writes `Ready=False` (LeaseExpired) on the rule map of a
/// host whose Lease was late; once the host is back, its agent's own status
/// takes the place of that verdict.
fn reassert(u: &Update, last: Option<&NodeRuleMapStatus>, writer: &StatusWriter) {
    let (Update::RuleMap(map), Some(last)) = (u, last) else {
        return;
    };
    let expired = map.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.reason == bulkhead_api::external_node::LEASE_EXPIRED)
    });
    if expired {
        tracing::info!("the operator marked this rule map LeaseExpired; reporting again");
        writer.set(last.clone());
    }
}

fn apply(
    u: Update,
    rule_map: &mut Option<NodeRuleMap>,
    shards: &mut BTreeMap<String, (IdentityMapSpec, i64)>,
    rule_map_listed: &mut bool,
    shards_listed: &mut bool,
) {
    match u {
        Update::RuleMap(m) => *rule_map = Some(*m),
        // The node's map is gone (the node is being removed): keep enforcing
        // what we have; an empty map would open everything.
        Update::RuleMapGone => {
            tracing::warn!("this node's NodeRuleMap was deleted; keeping the last one in force")
        }
        Update::RuleMapListed => *rule_map_listed = true,
        Update::Shard(name, spec, generation) => {
            shards.insert(name, (spec, generation));
        }
        Update::ShardGone(name) => {
            shards.remove(&name);
        }
        Update::ShardsListed => *shards_listed = true,
    }
}

fn watch_rule_map(client: Client, node: String, tx: mpsc::Sender<Update>) {
    let api: Api<NodeRuleMap> = Api::all(client);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={node}"));
    // The bookkeeping matters here too: a map deleted while the watch was
    // down shows up as gone after the re-list.
    spawn_watch(api, cfg, "NodeRuleMap", tx, |seen| match seen {
        Seen::Applied(_, m) => Update::RuleMap(Box::new(m)),
        Seen::Deleted(_) => Update::RuleMapGone,
        Seen::Synced => Update::RuleMapListed,
    });
}

fn watch_shards(client: Client, tx: mpsc::Sender<Update>) {
    let api: Api<IdentityMap> = Api::all(client);
    spawn_watch(
        api,
        watcher::Config::default(),
        "IdentityMap",
        tx,
        |seen| match seen {
            Seen::Applied(key, m) => {
                let generation = m.metadata.generation.unwrap_or(0);
                Update::Shard(key.name, m.spec, generation)
            }
            Seen::Deleted(key) => Update::ShardGone(key.name),
            Seen::Synced => Update::ShardsListed,
        },
    );
}

/// One watch through the shared bookkeeping (`bulkhead_api::watch`): what
/// it sees, turned into updates for the loop by `to_update`. A failing
/// watch retries with backoff and changes nothing meanwhile.
fn spawn_watch<K, F>(
    api: Api<K>,
    cfg: watcher::Config,
    kind: &'static str,
    tx: mpsc::Sender<Update>,
    to_update: F,
) where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    F: Fn(Seen<K>) -> Update + Send + 'static,
{
    tokio::spawn(async move {
        let mut stream = watcher(api, cfg).default_backoff().boxed();
        let mut book = Bookkeeping::default();
        loop {
            let event = match stream.try_next().await {
                Ok(Some(e)) => e,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(kind, error = %e, "watch failed; retrying, the maps stay as they are");
                    continue;
                }
            };
            for seen in book.event(event) {
                if tx.send(to_update(seen)).await.is_err() {
                    return;
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::Retry;
    use std::time::{Duration, Instant};

    #[test]
    fn failed_pass_is_retried_with_growing_backoff() {
        let now = Instant::now();
        let mut r = Retry::default();
        assert!(!r.due(now), "nothing to retry before a failure");
        assert_eq!(r.failed(now), Retry::FIRST);
        assert!(!r.due(now));
        assert!(r.due(now + Retry::FIRST));
        assert_eq!(r.failed(now), 2 * Retry::FIRST);
        for _ in 0..20 {
            r.failed(now);
        }
        assert_eq!(r.backoff, Retry::MAX);
        assert!(Retry::MAX > Duration::ZERO);
    }
}
