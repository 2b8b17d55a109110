//! The datapath as one object: loaded programs, pinned maps, attachments
//! and the flow reader.
//!
//! ```text
//!  Desired (validated) ──program()──► Maps: the slot not in force (diff)
//!        │                                 ──► flip (generation + 1)
//!        └─ + host routes ─► endpoints bound to their veths (anti-spoofing)
//!  interfaces ───────────sync_interfaces()──► Attacher (TCX / clsact),
//!                                             and a re-bind when routes moved
//!  bh_events ──────────── read_flows() ─────► FlowAggregator ─► records
//!  bh_rule_hits ───────── rule_hits() ──────► rule id → hits, last hit
//! ```

use std::collections::{BTreeMap, HashMap};

use crate::attach::{interfaces_with_prefix, Attacher, Hook};
use crate::desired::interfaces::{self, Bound};
use crate::desired::Desired;
use crate::error::Result;
use crate::flows::{FlowAggregator, FlowReader};
use crate::loader::{self, LoadOptions, Loaded};
use crate::maps::hits::RuleHits;
use crate::maps::{Maps, ProgramStats};

/// Which interfaces get which programs.
#[derive(Clone, Debug, Default)]
pub struct InterfaceConfig {
    /// Name prefixes of the host side of pod veths.
    pub endpoint_prefixes: Vec<String>,
    /// Host interfaces, by exact name.
    pub host_interfaces: Vec<String>,
}

#[derive(Debug)]
pub struct Datapath {
    loaded: Loaded,
    pub maps: Maps,
    attacher: Attacher,
    flows: FlowReader,
    /// The last programmed content and its binding, to program again
    /// (bound anew) when host routes change.
    binding: Option<Binding>,
    /// Conntrack timeouts (as loaded) and the last sweep of the full-mode table.
    ct_timeout_ns: u64,
    ct_closing_ns: u64,
    last_sweep: Option<std::time::Instant>,
    /// Whether Service ranges are configured (flows may go through one).
    services: bool,
    /// Whether pod interfaces are guarded (`bh_guarded`, `bpf/lib/guard.h`).
    guard_interfaces: bool,
    /// Whether the endpoint programs are pinned for the CNI plugin yet.
    programs_pinned: bool,
    /// Where every layout version pins, and ours (older ones are retired).
    pin_root: std::path::PathBuf,
    layout_version: u32,
}

/// How often the full-mode conntrack table is swept of expired entries.
pub const CONNTRACK_SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// The programs' clock (`bpf_ktime_get_ns`: CLOCK_MONOTONIC).
pub fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0)
}

#[derive(Debug)]
struct Binding {
    desired: Desired,
    bound: Bound,
}

impl Datapath {
    /// Loads the programs and opens (or creates) the pinned maps. Attaches nothing yet.
    pub fn open(opts: &LoadOptions) -> Result<Self> {
        let mut loaded = loader::load(opts)?;
        let maps = Maps::take(&mut loaded.endpoint)?;
        let flows = FlowReader::take(&mut loaded.endpoint)?;
        let attacher = Attacher::new(&loaded.pin_dir)?;
        Ok(Datapath {
            loaded,
            maps,
            attacher,
            flows,
            binding: None,
            ct_timeout_ns: u64::try_from(opts.ct_timeout.as_nanos()).unwrap_or(u64::MAX),
            ct_closing_ns: u64::try_from(opts.ct_closing_timeout.as_nanos()).unwrap_or(u64::MAX),
            last_sweep: None,
            services: !opts.service_cidrs.is_empty(),
            guard_interfaces: opts.guard_interfaces,
            programs_pinned: false,
            pin_root: opts.pin_root(),
            layout_version: opts.layout_version,
        })
    }

    /// The loaded objects (tests run programs with `BPF_PROG_TEST_RUN`).
    pub fn loaded(&self) -> &Loaded {
        &self.loaded
    }

    /// Makes the slot not in force hold `desired` (a diff), its pods bound
    /// to their interfaces by this namespace's host routes, and flips to it.
    /// On error the maps in force are those of the last successful pass.
    pub fn program(&mut self, desired: &Desired) -> Result<ProgramStats> {
        self.program_with_routes(desired, &interfaces::read_host_routes())
    }

    /// [`program`](Self::program) with the routes given (address → ifindex).
    pub fn program_with_routes(
        &mut self,
        desired: &Desired,
        routes: &HashMap<crate::layout::EndpointKey, u32>,
    ) -> Result<ProgramStats> {
        let bound = interfaces::bind(&desired.endpoints, &desired.pods, routes);
        for (pod, why) in &bound.unbound {
            tracing::warn!(pod, why, "endpoint not bound to an interface: its source addresses are checked against other pods' only");
        }
        let stats = self.maps.program(desired, &bound)?;
        self.binding = Some(Binding {
            desired: desired.clone(),
            bound,
        });
        Ok(stats)
    }

    /// Binds the last programmed endpoints again by the current host routes;
    /// when the binding changed, programs the other slot with it and flips
    /// (like any change: all or nothing). Returns whether it did.
    pub fn rebind(&mut self) -> Result<bool> {
        let Some(binding) = &self.binding else {
            return Ok(false);
        };
        let routes = interfaces::read_host_routes();
        let bound = interfaces::bind(&binding.desired.endpoints, &binding.desired.pods, &routes);
        if bound.endpoints == binding.bound.endpoints && bound.ifaces == binding.bound.ifaces {
            return Ok(false);
        }
        let desired = binding.desired.clone();
        self.maps.program(&desired, &bound)?;
        if let Some(b) = &mut self.binding {
            b.bound = bound;
        }
        Ok(true)
    }

    /// Attaches to every host interface, and to every pod interface not yet
    /// seen; forgets interfaces that went away. A host interface that is
    /// missing is an error (it was named explicitly); nothing is detached.
    pub fn sync_interfaces(&mut self, config: &InterfaceConfig) -> Result<Vec<String>> {
        self.attacher.forget_vanished();
        let mut newly = Vec::new();
        for interface in &config.host_interfaces {
            for hook in Hook::HOST {
                if !self.attacher.is_attached(interface, hook) {
                    self.attacher.attach(&mut self.loaded, interface, hook)?;
                    newly.push(interface.clone());
                }
            }
        }
        for interface in interfaces_with_prefix(&config.endpoint_prefixes) {
            for hook in Hook::ENDPOINT {
                if self.attacher.is_attached(&interface, hook) {
                    continue;
                }
                match self.attacher.attach(&mut self.loaded, &interface, hook) {
                    Ok(()) => newly.push(interface.clone()),
                    // A veth can vanish between listing and attaching.
                    Err(e) => tracing::warn!(interface, error = %e, "could not attach"),
                }
            }
        }
        newly.dedup();
        self.sync_guarded(config);
        self.pin_programs();
        if self.rebind()? {
            tracing::info!("endpoints re-bound to their interfaces");
        }
        self.retire_older_layouts();
        if self
            .last_sweep
            .is_none_or(|t| t.elapsed() >= CONNTRACK_SWEEP_INTERVAL)
        {
            self.last_sweep = Some(std::time::Instant::now());
            let swept = self.sweep_conntrack()?;
            tracing::debug!(swept, "conntrack swept");
        }
        Ok(newly)
    }

    /// Makes `bh_guarded` hold every pod interface this agent attached to
    /// (so a pod not in the rule map yet is closed, not open) and no
    /// interface that is gone. An entry the CNI plugin wrote for an
    /// interface this agent has not seen yet stays. Errors are logged: the
    /// next poll tries again.
    fn sync_guarded(&mut self, config: &InterfaceConfig) {
        let present = crate::attach::present_ifindexes();
        let Ok(guarded) = self.maps.guarded.read() else {
            tracing::warn!("could not read bh_guarded");
            return;
        };
        for index in guarded.iter().filter(|i| !present.contains(i)) {
            if let Err(e) = self.maps.guarded.remove(*index) {
                tracing::warn!(ifindex = index, error = %e, "bh_guarded");
            }
        }
        if !self.guard_interfaces {
            return;
        }
        for interface in interfaces_with_prefix(&config.endpoint_prefixes) {
            if !Hook::ENDPOINT
                .iter()
                .all(|h| self.attacher.is_attached(&interface, *h))
            {
                continue;
            }
            let Ok(index) = crate::attach::ifindex(&interface) else {
                continue;
            };
            if guarded.contains(&index) {
                continue;
            }
            match self.maps.guarded.insert(index) {
                Ok(()) => tracing::info!(interface, ifindex = index, "guarded"),
                Err(e) => tracing::warn!(interface, error = %e, "could not guard"),
            }
        }
    }

    /// Once the maps are programmed, pins the endpoint programs under
    /// `<pin dir>/progs/` for the CNI plugin to attach at veth creation
    /// (`crate::cni`). Never before: a program the plugin attaches then
    /// enforces a programmed rule map.
    fn pin_programs(&mut self) {
        if self.programs_pinned || self.binding.is_none() {
            return;
        }
        match loader::pin_endpoint_programs(&mut self.loaded) {
            Ok(()) => {
                self.programs_pinned = true;
                tracing::info!(dir = %loader::progs_dir(&self.loaded.pin_dir).display(), "endpoint programs pinned for the CNI plugin");
            }
            Err(e) => {
                tracing::error!(error = %e, "could not pin the endpoint programs; the CNI plugin refuses new pods until they are")
            }
        }
    }

    /// Once this layout's maps are programmed, detaches older layouts'
    /// programs from the interfaces this one is attached to (never before:
    /// there is no moment without enforcement) and removes the older
    /// layouts' pins once nothing is attached from them (`upgrade.rs`).
    fn retire_older_layouts(&mut self) {
        if self.binding.is_none() {
            return;
        }
        if crate::upgrade::older_versions(&self.pin_root, self.layout_version).is_empty() {
            return;
        }
        for interface in self.attacher.interfaces() {
            let Ok(index) = crate::attach::ifindex(&interface) else {
                continue;
            };
            crate::upgrade::retire_links(&self.pin_root, self.layout_version, &interface, index);
        }
        crate::upgrade::remove_unused(&self.pin_root, self.layout_version);
    }

    /// Removes expired flows of full-mode endpoints from their table (the
    /// LRU table evicts by itself); `sync_interfaces` does it every
    /// [`CONNTRACK_SWEEP_INTERVAL`].
    pub fn sweep_conntrack(&mut self) -> Result<usize> {
        self.maps
            .conntrack
            .sweep(monotonic_ns(), self.ct_timeout_ns, self.ct_closing_ns)
    }

    pub fn attach(&mut self, interface: &str, hook: Hook) -> Result<()> {
        self.attacher.attach(&mut self.loaded, interface, hook)
    }

    pub fn detach_all(&mut self) -> Result<()> {
        self.attacher.detach_all(&mut self.loaded)
    }

    /// Moves pending flow events into `agg`. With Service ranges, a read
    /// holding a flow sent to a Service that `agg` cannot name yet walks
    /// conntrack once for the pods' VIA_SERVICE entries; other reads walk
    /// nothing (a walk of a large table takes milliseconds).
    pub fn read_flows(&mut self, agg: &mut FlowAggregator) -> usize {
        let (services, conntrack) = (self.services, &self.maps.conntrack);
        self.flows.read_into(agg, || {
            if services {
                conntrack.service_tuples()
            } else {
                Default::default()
            }
        })
    }

    pub fn counters(&self) -> Result<BTreeMap<&'static str, u64>> {
        self.maps.counters.read()
    }

    /// Rule id → hits over every CPU (`bh_rule_hits`).
    pub fn rule_hits(&self) -> Result<BTreeMap<u32, RuleHits>> {
        self.maps.hits.read()
    }

    /// Deletes the hits of rules not in `keep` (rules the node no longer
    /// carries), so the map holds only what the slots can decide.
    pub fn forget_rule_hits(&mut self, keep: &std::collections::BTreeSet<u32>) -> Result<usize> {
        self.maps.hits.forget(keep)
    }
}
