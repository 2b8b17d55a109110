//! `up`, `down` and `status` of the whole lab. Today the lab is the control
//! plane; the network topology, the operator and the agents join here, each
//! as one more step of `up` that records what it makes in the state
//! directory (processes through `process::Process`, other things in
//! `lab.json`), so that `down` undoes exactly that, in reverse.

use std::net::IpAddr;
use std::path::PathBuf;

use crate::control_plane::{ControlPlane, ControlPlaneConfig};
use crate::error::Result;
use crate::process::{self, Lifetime};
use crate::state::{LabRecord, StateDir};

/// What `bulkhead-lab up` builds.
#[derive(Clone, Debug)]
pub struct LabConfig {
    pub dir: PathBuf,
    /// Node names; each node's agent gets a kubeconfig.
    pub nodes: Vec<String>,
    /// Where the API server listens; `None` for loopback.
    pub bind_address: Option<IpAddr>,
}

/// Brings the lab up and leaves it running; returns what it started.
pub fn up(config: &LabConfig) -> Result<LabRecord> {
    let mut control_plane = ControlPlaneConfig::new(&config.dir)?;
    control_plane.lifetime = Lifetime::Detached;
    control_plane.agents = config.nodes.clone();
    if let Some(address) = config.bind_address {
        control_plane.bind_address = address;
    }
    let control_plane = ControlPlane::start_with(control_plane)?;
    // Next steps (topology, operator, agents) go here, taking `&control_plane`;
    // an error before `detach` stops what was started through `Drop`.
    Ok(control_plane.detach())
}

/// Stops every process the lab recorded, newest first, then removes the
/// state directory. Returns the names of the processes stopped.
pub fn down(state: &StateDir) -> Result<Vec<String>> {
    let stopped = process::stop_recorded(state)?;
    state.remove()?;
    Ok(stopped)
}

/// One line of `status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessStatus {
    pub name: String,
    pub pid: i32,
    pub running: bool,
}

/// What the state directory records and whether each process still runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub record: Option<LabRecord>,
    pub processes: Vec<ProcessStatus>,
}

pub fn status(state: &StateDir) -> Result<Status> {
    let record = if state.record_path().exists() {
        Some(state.read_record()?)
    } else {
        None
    };
    let processes = process::recorded(state)?
        .into_iter()
        .map(|p| ProcessStatus {
            running: p.is_running(),
            name: p.name,
            pid: p.pid,
        })
        .collect();
    Ok(Status { record, processes })
}
