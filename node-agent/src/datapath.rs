//! The datapath as one object: loaded programs, pinned maps, attachments
//! and the flow reader.
//!
//! ```text
//!  Desired (validated) ──program()──► Maps (diff) ──► generation bump
//!  interfaces ───────────sync_interfaces()──► Attacher (TCX / clsact)
//!  bh_events ──────────── read_flows() ─────► FlowAggregator ─► records
//! ```

use std::collections::BTreeMap;

use crate::attach::{interfaces_with_prefix, Attacher, Hook};
use crate::desired::Desired;
use crate::error::Result;
use crate::flows::{FlowAggregator, FlowReader};
use crate::loader::{self, LoadOptions, Loaded};
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
        })
    }

    /// The loaded objects (tests run programs with `BPF_PROG_TEST_RUN`).
    pub fn loaded(&self) -> &Loaded {
        &self.loaded
    }

    /// Makes the maps hold `desired` (a diff) and bumps the generation.
    pub fn program(&mut self, desired: &Desired) -> Result<ProgramStats> {
        self.maps.program(desired)
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
        Ok(newly)
    }

    pub fn attach(&mut self, interface: &str, hook: Hook) -> Result<()> {
        self.attacher.attach(&mut self.loaded, interface, hook)
    }

    pub fn detach_all(&mut self) -> Result<()> {
        self.attacher.detach_all(&mut self.loaded)
    }

    /// Moves pending flow events into `agg`.
    pub fn read_flows(&mut self, agg: &mut FlowAggregator) -> usize {
        self.flows.read_into(agg)
    }

    pub fn counters(&self) -> Result<BTreeMap<&'static str, u64>> {
        self.maps.counters.read()
    }
}
