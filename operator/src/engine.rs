//! The loop: feed events in, compile, and (when leading) publish.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bulkhead_api::{IdentityMap, NodeRuleMap};
use bulkhead_policy::{CompileOptions, Compiler, IdentityAllocation, Snapshot};
use kube::runtime::events::Recorder;
use kube::Client;
use tokio::sync::{mpsc, watch};

use crate::feed::{FeedEvent, Kind};
use crate::http::Health;
use crate::metrics::{CompileLabel, Metrics};
use crate::status::{self, StatusWriter};
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
    dirty: bool,
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
        }
    }

    /// Runs until the feed closes.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<FeedEvent>,
        mut leader: watch::Receiver<bool>,
    ) {
        let mut retry: Option<Instant> = None;
        loop {
            let wait = retry.map_or(Duration::from_secs(30), |t| {
                t.saturating_duration_since(Instant::now())
            });
            tokio::select! {
                event = rx.recv() => match event {
                    Some(e) => self.handle(e),
                    None => return,
                },
                changed = leader.changed() => {
                    if changed.is_err() { return; }
                    self.dirty = true;
                }
                _ = tokio::time::sleep(wait) => { self.dirty = true; }
            }
            // Take everything that is already queued before publishing once.
            while let Ok(e) = rx.try_recv() {
                self.handle(e);
            }
            self.maybe_load();
            if self.compiler.is_none() || !*leader.borrow() || !self.dirty {
                continue;
            }
            let started = Instant::now();
            match self.publish().await {
                Ok(()) => {
                    self.dirty = false;
                    retry = None;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "publish failed; retrying");
                    retry = Some(Instant::now() + Duration::from_secs(1));
                }
            }
            self.metrics
                .reconcile_duration
                .observe(started.elapsed().as_secs_f64());
        }
    }

    fn handle(&mut self, event: FeedEvent) {
        match event {
            FeedEvent::Change { change, generation } => {
                if let Some((kind, name, g)) = generation {
                    self.generations.insert((kind, name), g);
                }
                match &mut self.compiler {
                    Some(c) => {
                        let started = Instant::now();
                        c.apply(change);
                        self.observe_compile("incremental", started);
                    }
                    None => self.pending.apply(change),
                }
                self.dirty = true;
            }
            FeedEvent::Synced(kind) => {
                self.synced.insert(kind);
                self.dirty = true;
            }
            FeedEvent::RuleMap(obj) => {
                let name = kube::ResourceExt::name_any(obj.as_ref());
                self.rule_maps.insert(name, *obj);
                self.dirty = true; // an agent may have programmed a generation
            }
            FeedEvent::RuleMapGone(name) => {
                self.rule_maps.remove(&name);
                self.dirty = true;
            }
            FeedEvent::Shard(obj) => {
                let name = kube::ResourceExt::name_any(obj.as_ref());
                self.shards.insert(name, *obj);
            }
            FeedEvent::ShardGone(name) => {
                self.shards.remove(&name);
                self.dirty = true;
            }
            FeedEvent::PublishedSynced(kind) => {
                self.published_synced.insert(kind);
            }
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
        let allocation =
            IdentityAllocation::from_identity_maps(self.shards.values().map(|s| &s.spec));
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

    async fn publish(&mut self) -> Result<(), Error> {
        let Some(compiler) = &self.compiler else {
            return Ok(());
        };
        let out = compiler.output();
        // Shards first: an agent must know an identity before a rule names it.
        publish::shards(
            &self.client,
            &out.identity_maps,
            &mut self.shards,
            &self.metrics,
        )
        .await?;
        publish::rule_maps(
            &self.client,
            &out.rule_maps,
            &mut self.rule_maps,
            &self.metrics,
        )
        .await?;
        // Translated NetworkPolicies (`networkpolicy:<ns>/<name>`) have no
        // SegmentationPolicy to write a status to.
        let segmentation_policies = out
            .policies
            .iter()
            .filter(|(name, _)| !name.starts_with(bulkhead_policy::netpol::POLICY_PREFIX));
        for (name, facts) in segmentation_policies {
            let generation = self
                .generations
                .get(&(Kind::SegmentationPolicy, name.clone()))
                .copied();
            let programmed = status::nodes_programmed(facts, &out.rule_maps, &self.rule_maps);
            let st = status::policy_status(facts, generation, programmed);
            if let Err(e) = self
                .statuses
                .policy(&self.client, &self.recorder, name, st, &self.metrics)
                .await
            {
                self.metrics.error("segmentationpolicy");
                tracing::warn!(error = %e, "status not written");
            }
        }
        for (name, facts) in &out.mappings {
            let generation = self
                .generations
                .get(&(Kind::LabelMapping, name.clone()))
                .copied();
            let st = status::mapping_status(facts, generation);
            if let Err(e) = self
                .statuses
                .mapping(&self.client, name, st, &self.metrics)
                .await
            {
                self.metrics.error("labelmapping");
                tracing::warn!(error = %e, "status not written");
            }
        }
        self.statuses.retain(&out.policies, &out.mappings);
        Ok(())
    }
}
