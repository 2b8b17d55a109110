//! Standalone mode: enforce a NodeRuleMap and IdentityMap shards read from
//! files, with no API server, and reload when the files change.
//!
//! A reload that fails (unreadable or malformed file, invalid field, a map
//! that would overflow, a missing interface) is logged and written to the
//! status file; the maps keep what they held, so what enforces stays.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::datapath::{Datapath, InterfaceConfig};
use crate::desired::Desired;
use crate::error::{Error, Result};
use crate::flows::Resolver;
use crate::loader::LoadOptions;
use crate::maps::ProgramStats;
use crate::outputs::{OutputConfig, Outputs};
use crate::spec;

/// What standalone mode reads and writes.
#[derive(Clone, Debug)]
pub struct Config {
    pub rule_map: PathBuf,
    pub identities: Vec<PathBuf>,
    pub interfaces: InterfaceConfig,
    pub poll_interval: Duration,
    pub outputs: OutputConfig,
    /// A JSON status document rewritten after every (re)programming and
    /// whenever the attached interfaces change.
    pub status_file: Option<PathBuf>,
    pub detach_on_exit: bool,
}

/// What the status file says.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// How many times the maps were programmed successfully by this process.
    pub programmed: u64,
    pub generation: u32,
    pub stats: Option<ProgramStats>,
    /// The last reload's error; the maps still hold the previous content.
    pub error: Option<String>,
    pub interfaces: Vec<String>,
}

/// Reads and validates every input file; touches nothing. Also returns
/// the names of everything in them, for flow records, and the node's name.
pub fn read_desired(config: &Config) -> Result<(Desired, Resolver, String)> {
    let rule_map = spec::read_rule_map(&config.rule_map)?;
    let shards = config
        .identities
        .iter()
        .map(|p| spec::read_identity_map(p))
        .collect::<Result<Vec<_>>>()?;
    let node = rule_map.host.name.clone();
    let resolver = Resolver::new(&node, &rule_map, &shards);
    Ok((Desired::build(&rule_map, &shards)?, resolver, node))
}

/// What the input files look like from their metadata (inode, size, change
/// and modification times), so an idle agent polls with a few `stat` calls
/// instead of reading and hashing every file. A file changed in the last
/// two seconds is also read: file times come from a clock that ticks every
/// few milliseconds on many kernels, so two same-sized writes within one tick
/// look alike by metadata. A missing file counts as a state of its own.
fn fingerprint(config: &Config) -> u64 {
    use std::os::unix::fs::MetadataExt;
    const RECENT: Duration = Duration::from_secs(2);
    let mut h = DefaultHasher::new();
    for path in std::iter::once(&config.rule_map).chain(config.identities.iter()) {
        let Ok(m) = std::fs::metadata(path) else {
            None::<()>.hash(&mut h);
            continue;
        };
        (m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec()).hash(&mut h);
        (m.ctime(), m.ctime_nsec()).hash(&mut h);
        let recent = m
            .modified()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age < RECENT);
        if recent {
            std::fs::read(path).ok().hash(&mut h);
        }
    }
    h.finish()
}

struct Runner {
    config: Config,
    datapath: Datapath,
    status: Status,
    outputs: Outputs,
}

impl Runner {
    fn write_status(&self) {
        let Some(path) = &self.config.status_file else {
            return;
        };
        let tmp = path.with_extension("tmp");
        let text = serde_json::to_string_pretty(&self.status).unwrap_or_default();
        if std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, path))
            .is_err()
        {
            tracing::warn!(path = %path.display(), "could not write the status file");
        }
    }

    fn reload(&mut self) -> Result<()> {
        let (desired, resolver, _) = read_desired(&self.config)?;
        let t0 = Instant::now();
        let stats = self.datapath.program(&desired)?;
        self.outputs.telemetry.observe_fill(&stats.fill);
        self.outputs
            .telemetry
            .programming
            .observe(t0.elapsed().as_secs_f64());
        self.outputs
            .telemetry
            .generation
            .set(i64::from(stats.generation));
        // Events still in the ring buffer were judged under the old maps.
        self.outputs.tick(&mut self.datapath);
        self.outputs.set_resolver(resolver);
        tracing::info!(generation = stats.generation, policy = ?stats.policy, endpoints = ?stats.endpoints, "programmed");
        self.status.programmed += 1;
        self.status.generation = stats.generation;
        self.status.stats = Some(stats);
        self.status.error = None;
        Ok(())
    }

    /// Attaches to new interfaces; true when the list the status shows changed.
    fn sync_interfaces(&mut self) -> Result<bool> {
        let newly = self.datapath.sync_interfaces(&self.config.interfaces)?;
        if !newly.is_empty() {
            tracing::info!(?newly, "attached to new interfaces");
        }
        let mut interfaces =
            crate::attach::interfaces_with_prefix(&self.config.interfaces.endpoint_prefixes);
        interfaces.extend(self.config.interfaces.host_interfaces.iter().cloned());
        let changed = interfaces != self.status.interfaces;
        self.status.interfaces = interfaces;
        self.outputs
            .telemetry
            .programs_attached
            .set(2 * self.status.interfaces.len() as i64);
        Ok(changed)
    }
}

/// Runs until SIGINT or SIGTERM.
pub async fn run(config: Config, load: LoadOptions) -> Result<()> {
    // Validate before loading anything: bad input never reaches the kernel.
    let (desired, resolver, node) = read_desired(&config)?;
    let datapath = Datapath::open(&load)?;
    let mut outputs = Outputs::start(&node, &config.outputs)?;
    outputs.set_resolver(resolver);
    let mut runner = Runner {
        config,
        datapath,
        status: Status::default(),
        outputs,
    };
    let stats = runner.datapath.program(&desired)?;
    runner.outputs.telemetry.observe_fill(&stats.fill);
    runner
        .outputs
        .telemetry
        .generation
        .set(i64::from(stats.generation));
    runner
        .outputs
        .telemetry
        .ready
        .store(true, Ordering::Relaxed);
    runner.status.programmed = 1;
    runner.status.generation = stats.generation;
    runner.status.stats = Some(stats);
    runner.sync_interfaces()?;
    runner.write_status();
    tracing::info!(generation = runner.status.generation, "enforcing");

    let mut seen = fingerprint(&runner.config);
    let mut tick = tokio::time::interval(runner.config.poll_interval);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::invalid("agent", "signals", e.to_string()))?;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
        let now = fingerprint(&runner.config);
        if now != seen {
            seen = now;
            if let Err(e) = runner.reload() {
                runner.outputs.telemetry.programming_failures.inc();
                tracing::error!(error = %e, "reload failed; the previous rule map stays in force");
                runner.status.error = Some(e.to_string());
            }
            runner.write_status();
        }
        match runner.sync_interfaces() {
            // The status lists the interfaces attached now, not at the last reload.
            Ok(true) => runner.write_status(),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "interfaces"),
        }
        runner.outputs.tick(&mut runner.datapath);
    }
    runner.outputs.shutdown(&mut runner.datapath);
    if runner.config.detach_on_exit {
        runner.datapath.detach_all()?;
        tracing::info!("detached");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &std::path::Path) -> Config {
        Config {
            rule_map: dir.join("rule-map.yaml"),
            identities: vec![dir.join("identities.yaml")],
            interfaces: InterfaceConfig::default(),
            poll_interval: Duration::from_millis(500),
            outputs: OutputConfig::default(),
            status_file: None,
            detach_on_exit: false,
        }
    }

    #[test]
    fn fingerprint_follows_rewrites_renames_and_removal_but_not_idle_polls() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = config(dir.path());
        std::fs::write(&c.rule_map, "a: 1\n").expect("file operation");
        std::fs::write(&c.identities[0], "b: 1\n").expect("file operation");
        let idle = fingerprint(&c);
        assert_eq!(idle, fingerprint(&c), "nothing changed");

        // The same length rewritten in place: only the times tell.
        std::fs::write(&c.rule_map, "a: 2\n").expect("file operation");
        let rewritten = fingerprint(&c);
        assert_ne!(idle, rewritten);

        // Replaced by rename, as a ConfigMap volume or an atomic writer does.
        let tmp = dir.path().join("new");
        std::fs::write(&tmp, "b: 2\n").expect("file operation");
        std::fs::rename(&tmp, &c.identities[0]).expect("file operation");
        let renamed = fingerprint(&c);
        assert_ne!(rewritten, renamed);

        std::fs::remove_file(&c.identities[0]).expect("file operation");
        assert_ne!(renamed, fingerprint(&c), "a missing file is a change");
    }
}
