//! The loop: feed events in, compile, and (when leading) publish.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bulkhead_api::{IdentityMap, NodeRuleMap};
use bulkhead_policy::{Change, CompileOptions, Compiler, IdentityAllocation, Snapshot};
use kube::api::ListParams;
use kube::runtime::events::Recorder;
use kube::{Api, Client};
use tokio::sync::{mpsc, watch};

use crate::call::{bounded, CALL_TIMEOUT};
use crate::exceptions::Exceptions;
use crate::feed::{FeedEvent, Kind};
use crate::http::Health;
use crate::metrics::{CompileLabel, KindLabel, Metrics};
use crate::observed::Observed;
use crate::promotion::Promotions;
use crate::status::StatusWriter;
use crate::{publish, Error};

/// Everything the loop keeps.
pub struct Engine {
    client: Client,
    options: CompileOptions,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    recorder: Recorder,
    compiler: Option<Compiler>,
    pending: Snapshot,
    synced: BTreeSet<Kind>,
    published_synced: BTreeSet<&'static str>,
    rule_maps: BTreeMap<String, NodeRuleMap>,
    shards: BTreeMap<String, IdentityMap>,
    generations: BTreeMap<(Kind, String), i64>,
    statuses: StatusWriter,
    /// Something the rule maps or shards depend on changed: a full pass.
    dirty: bool,
    /// Nodes whose agent reported a new status: their policies' status only.
    status_nodes: BTreeSet<String>,
    /// Whether this replica led at the last look, to see it win.
    leading: bool,
    /// Won the Lease and not yet taken over the published numbering.
    reseed: bool,
    /// Promotion gates and the promotions made.
    promotions: Promotions,
    /// The gates are due for a check.
    check_due: bool,
    /// SegmentationExceptions seen, and their states as last written.
    exceptions: Exceptions,
    /// Rules the compiler's clock has expired, as last seen (for Events).
    expired: BTreeMap<String, Vec<(String, jiff::Timestamp)>>,
    /// How often rule hits are gathered from the agents into policy status.
    hits_interval: Duration,
    /// The hits interval came round: the next full status pass gathers hits.
    hits_due: bool,
    /// Rules not hit for this long count as unused (`bulkhead_operator_rules_recertify`).
    unused_for: jiff::SignedDuration,
    /// What the watches have fed (the published_resource_version gauges).
    observed: Arc<Observed>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("synced", &self.synced)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// A loop that has seen nothing yet.
    pub fn new(
        client: Client,
        options: CompileOptions,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        recorder: Recorder,
    ) -> Self {
        Self {
            client,
            options,
            metrics,
            health,
            recorder,
            compiler: None,
            pending: Snapshot::default(),
            synced: BTreeSet::new(),
            published_synced: BTreeSet::new(),
            rule_maps: BTreeMap::new(),
            shards: BTreeMap::new(),
            generations: BTreeMap::new(),
            statuses: StatusWriter::default(),
            dirty: true,
            status_nodes: BTreeSet::new(),
            leading: false,
            reseed: false,
            promotions: Promotions::new(None, Duration::from_secs(60)),
            check_due: true,
            exceptions: Exceptions::new(bulkhead_policy::exception::DEFAULT_MAX_DURATION),
            expired: BTreeMap::new(),
            hits_interval: Duration::from_secs(60),
            hits_due: true,
            unused_for: jiff::SignedDuration::from_hours(90 * 24),
            observed: Arc::new(Observed::default()),
        }
    }

    /// The same engine reporting, once a pass has published them, the
    /// versions the watches recorded in `observed`.
    pub fn with_observed(mut self, observed: Arc<Observed>) -> Self {
        self.observed = observed;
        self
    }

    /// The same engine gathering rule hits every `interval`, and counting
    /// rules not hit for `unused_for` as unused.
    pub fn with_hits(mut self, interval: Duration, unused_for: jiff::SignedDuration) -> Self {
        self.hits_interval = interval;
        self.unused_for = unused_for;
        self
    }

    /// The same engine refusing exceptions that run longer than `max` after their request.
    pub fn with_exception_max(mut self, max: Duration) -> Self {
        self.exceptions = Exceptions::new(max);
        self
    }

    /// How long until the clock alone changes something: a rule's or an
    /// exception's expiry. The loop wakes then, to the second.
    fn until_next_expiry(&self) -> Option<Duration> {
        let now = jiff::Timestamp::now();
        let rules = self.compiler.as_ref().and_then(Compiler::next_expiry);
        let next = rules
            .into_iter()
            .chain(self.exceptions.next_change(now))
            .min()?;
        let wait = next.duration_since(now);
        Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
    }

    /// The same engine with these promotion gates (a collector to ask, how often).
    pub fn with_promotions(mut self, promotions: Promotions) -> Self {
        self.promotions = promotions;
        self
    }

    /// Runs until the feed closes.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<FeedEvent>,
        mut leader: watch::Receiver<bool>,
    ) {
        let mut retry: Option<Instant> = None;
        let mut gates = tokio::time::interval(self.promotions.interval);
        gates.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut hits = tokio::time::interval(self.hits_interval);
        hits.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wait = retry.map_or(Duration::from_secs(30), |t| {
                t.saturating_duration_since(Instant::now())
            });
            let wait = self.until_next_expiry().map_or(wait, |e| e.min(wait));
            tokio::select! {
                event = rx.recv() => match event {
                    Some(e) => self.handle(e),
                    None => return,
                },
                changed = leader.changed() => {
                    if changed.is_err() { return; }
                }
                _ = tokio::time::sleep(wait) => { self.dirty = true; }
                _ = gates.tick() => { self.check_due = true; }
                _ = hits.tick() => { self.hits_due = true; }
            }
            // What was fed before this point is in the queue: after the
            // drain and a pass that leaves nothing dirty, it is published.
            let fed = self.observed.snapshot();
            // Take everything that is already queued before publishing once.
            while let Ok(e) = rx.try_recv() {
                self.handle(e);
            }
            let leading = *leader.borrow();
            let started = Instant::now();
            let pass = self.step(leading);
            // A replica that stops leading stops writing, mid-pass too.
            let result = tokio::select! {
                r = pass => r,
                _ = leader.wait_for(|l| !*l), if leading => {
                    tracing::warn!("leadership lost during a publish pass; stopped it");
                    self.dirty = true;
                    Ok(false)
                }
            };
            self.mark_published(fed, result.is_ok() && leading);
            match result {
                Ok(true) => {
                    retry = None;
                    self.metrics
                        .reconcile_duration
                        .observe(started.elapsed().as_secs_f64());
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "publish failed; retrying");
                    retry = Some(Instant::now() + Duration::from_secs(1));
                }
            }
        }
    }

    /// After a turn: when its pass succeeded and left nothing dirty, what
    /// the watches had fed before the drain is what the published maps
    /// reflect (`bulkhead_operator_published_resource_version`).
    fn mark_published(&self, fed: BTreeMap<&'static str, u64>, succeeded: bool) {
        if !succeeded || self.dirty || self.compiler.is_none() {
            return;
        }
        for (kind, rv) in fed {
            self.metrics
                .published_resource_version
                .get_or_create(&KindLabel { kind: kind.into() })
                .set(i64::try_from(rv).unwrap_or(i64::MAX));
        }
    }

    /// What one turn of the loop does after taking in events: the first
    /// compile, the clock, and (when leading) the reseed after a won Lease,
    /// a full pass when something changed, a status pass when only agents
    /// reported. Returns whether it wrote anything or tried to.
    pub async fn step(&mut self, leading: bool) -> Result<bool, Error> {
        self.maybe_load();
        if leading && !self.leading {
            self.reseed = true;
        }
        self.leading = leading;
        let Some(compiler) = &mut self.compiler else {
            return Ok(false);
        };
        let before = compiler.output().allocation.released().count();
        let now = jiff::Timestamp::now();
        compiler.advance_clock(now);
        if compiler.output().allocation.released().count() != before {
            self.dirty = true; // a quarantine ended: its shard changes
        }
        let expired = compiler.expired_rules();
        let newly = gates::newly_expired(&self.expired, &expired);
        if expired != self.expired {
            self.dirty = true; // a rule reached its expiry, or came back
            self.expired = expired;
        }
        if !leading {
            return Ok(false);
        }
        self.record_expiries(newly).await;
        if self.reseed {
            self.take_over_numbering().await?;
            self.reseed = false;
            self.dirty = true;
        }
        if self.check_due {
            self.check_due = false;
            self.check_promotions(jiff::Timestamp::now()).await;
            if !self.dirty {
                self.write_policy_statuses(None).await;
            }
        }
        if self.hits_due && !self.dirty {
            // Every policy's status, agents' reports included.
            self.write_policy_statuses(None).await;
            self.status_nodes.clear();
            return Ok(true);
        }
        if self.dirty {
            self.publish().await?;
            if let Some(c) = &self.compiler {
                self.metrics.kpis.observe(c.output(), false);
            }
            let (client, recorder) = (&self.client, &self.recorder);
            let exceptions = &mut self.exceptions;
            exceptions
                .write_statuses(client, recorder, now, &self.metrics)
                .await;
            self.dirty = false;
            self.status_nodes.clear();
            self.metrics.pass("full");
            return Ok(true);
        }
        if !self.status_nodes.is_empty() {
            let nodes = std::mem::take(&mut self.status_nodes);
            self.write_policy_statuses(Some(&nodes)).await;
            self.metrics.pass("status");
            return Ok(true);
        }
        Ok(false)
    }

    /// On winning the Lease: the numbering the previous leader published
    /// becomes ours before anything is published, read fresh from the API
    /// server (not from the watch, which may lag the last writes).
    async fn take_over_numbering(&mut self) -> Result<(), Error> {
        let api: Api<IdentityMap> = Api::all(self.client.clone());
        let listed = bounded(
            "listing IdentityMaps",
            CALL_TIMEOUT,
            api.list(&ListParams::default()),
        )
        .await?;
        self.shards = listed
            .items
            .into_iter()
            .map(|s| (kube::ResourceExt::name_any(&s), s))
            .collect();
        let allocation = self.published_allocation();
        let started = Instant::now();
        if let Some(compiler) = &mut self.compiler {
            compiler.reseed(allocation);
            tracing::info!(
                identities = compiler.output().identities.len(),
                "took over the published identity numbering"
            );
        }
        self.observe_compile("full", started);
        Ok(())
    }

    /// The allocation in the shards as last seen, its clock at the present.
    fn published_allocation(&self) -> IdentityAllocation {
        let mut allocation =
            IdentityAllocation::from_identity_maps(self.shards.values().map(|s| &s.spec));
        allocation.advance(jiff::Timestamp::now(), self.options.identity_quarantine);
        allocation
    }

    fn handle(&mut self, event: FeedEvent) {
        match event {
            FeedEvent::Change {
                change,
                generation,
                policy,
            } => {
                if let Some((kind, name, g)) = generation {
                    self.generations.insert((kind, name), g);
                }
                if let Some(seen) = policy {
                    let (name, meta) = *seen;
                    self.promotions.observe(&name, meta);
                }
                let policy_changed =
                    matches!(change, Change::UpsertPolicy(..) | Change::DeletePolicy(_));
                if let Change::DeletePolicy(name) = &change {
                    self.promotions.forget(name, &self.metrics);
                }
                self.apply(change);
                if policy_changed {
                    self.sync_modes();
                }
                self.dirty = true;
            }
            FeedEvent::Synced(kind) => {
                self.synced.insert(kind);
                self.dirty = true;
            }
            FeedEvent::RuleMap(obj) => {
                let name = kube::ResourceExt::name_any(obj.as_ref());
                let desired = self
                    .compiler
                    .as_ref()
                    .map(|c| c.output().rule_maps.get(&name));
                if desired.is_some_and(|d| d != Some(&obj.spec)) {
                    // Not what we publish (someone else's write, or an event
                    // older than our last apply): a pass puts it right.
                    self.dirty = true;
                } else if self.rule_maps.get(&name).is_none_or(|old| {
                    old.status != obj.status || old.metadata.generation != obj.metadata.generation
                }) {
                    // The agent reported: only the status of its policies moves.
                    self.status_nodes.insert(name.clone());
                }
                // Otherwise the echo of our own apply: nothing to do.
                self.rule_maps.insert(name, *obj);
            }
            FeedEvent::RuleMapGone(name) => {
                self.rule_maps.remove(&name);
                self.dirty = true;
            }
            FeedEvent::Shard(obj) => {
                let name = kube::ResourceExt::name_any(obj.as_ref());
                let desired = self.compiler.as_ref().map(|c| {
                    let shards = &c.output().identity_maps;
                    shards.iter().find(|s| publish::shard_name(s.shard) == name)
                });
                if desired.is_some_and(|d| d != Some(&obj.spec)) {
                    self.dirty = true;
                }
                self.shards.insert(name, *obj);
            }
            FeedEvent::ShardGone(name) => {
                self.shards.remove(&name);
                self.dirty = true;
            }
            FeedEvent::PublishedSynced(kind) => {
                self.published_synced.insert(kind);
            }
            FeedEvent::Exception(obj) => {
                let change = self.exceptions.observe(&obj);
                self.apply(change);
                self.dirty = true;
            }
            FeedEvent::ExceptionGone(name) => {
                let change = self.exceptions.forget(&name);
                self.apply(change);
                self.dirty = true;
            }
        }
    }

    fn apply(&mut self, change: Change) {
        match &mut self.compiler {
            Some(c) => {
                let started = Instant::now();
                c.apply(change);
                self.observe_compile("incremental", started);
            }
            None => self.pending.apply(change),
        }
    }

    fn snapshot(&self) -> &Snapshot {
        match &self.compiler {
            Some(c) => c.snapshot(),
            None => &self.pending,
        }
    }

    fn observe_compile(&self, mode: &str, started: Instant) {
        self.metrics
            .compile_duration
            .get_or_create(&CompileLabel { mode: mode.into() })
            .observe(started.elapsed().as_secs_f64());
    }

    /// The first compile, once every watch has listed: identities continue
    /// from the published shards.
    fn maybe_load(&mut self) {
        if self.compiler.is_some()
            || !Kind::required(self.options.network_policies)
                .iter()
                .all(|k| self.synced.contains(k))
            || !self.published_synced.contains("identitymap")
            || !self.published_synced.contains("noderulemap")
        {
            return;
        }
        let allocation = self.published_allocation();
        let mut compiler = Compiler::new(self.options.clone(), allocation);
        let started = Instant::now();
        compiler.load(std::mem::take(&mut self.pending));
        self.observe_compile("full", started);
        let out = compiler.output();
        tracing::info!(
            endpoints = out.endpoints.len(),
            identities = out.identities.len(),
            nodes = out.rule_maps.len(),
            policies = out.policies.len(),
            "first full compile done"
        );
        self.compiler = Some(compiler);
        self.health.ready.store(true, Ordering::Relaxed);
        self.dirty = true;
    }
}

#[path = "engine_gates.rs"]
mod gates;

#[path = "engine_publish.rs"]
mod publishing;

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "engine_promotion_tests.rs"]
mod promotion_tests;

#[cfg(test)]
#[path = "engine_hits_tests.rs"]
mod hits_tests;
