//! `bulkhead-lab up | down | status | prune`: labs that outlive the program
//! that made them, found again through their state directory.

use std::path::{Path, PathBuf};

use super::{Lab, LabSpec};
use crate::error::Result;
use crate::netns;
use crate::process::{self, Lifetime};
use crate::state::{LabRecord, StateDir};
use crate::topology;

/// Brings a lab up in `spec.dir` and leaves it running.
pub fn up(mut spec: LabSpec) -> Result<LabRecord> {
    spec.lifetime = Lifetime::Detached;
    Lab::start(spec)?.detach()
}

/// What `down` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Down {
    /// Processes stopped, newest first.
    pub stopped: Vec<String>,
    /// Network namespaces removed.
    pub namespaces: usize,
}

/// Stops every process the lab recorded (newest first: agents, operators,
/// the API server, etcd), unmounts the agents' bpffs, removes the
/// topology, then the state directory.
pub fn down(state: &StateDir) -> Result<Down> {
    let parts = state
        .read_record()
        .ok()
        .and_then(|r| r.parts)
        .unwrap_or_default();
    let stopped = process::stop_recorded(state)?;
    if let Some(bpffs) = &parts.bpffs {
        netns::unmount(bpffs)?;
    }
    let mut namespaces = 0;
    if let Some(topology) = &parts.topology {
        namespaces = topology
            .nodes
            .iter()
            .flat_map(|n| std::iter::once(&n.netns).chain(n.pods.iter().map(|p| &p.netns)))
            .filter(|ns| netns::netns_exists(ns))
            .count();
        topology::teardown(topology)?;
    }
    state.remove()?;
    Ok(Down {
        stopped,
        namespaces,
    })
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
    /// Recorded network namespaces that no longer exist.
    pub missing_namespaces: Vec<String>,
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
    let mut missing_namespaces = Vec::new();
    if let Some(topology) = record
        .as_ref()
        .and_then(|r| r.parts.as_ref())
        .and_then(|p| p.topology.as_ref())
    {
        for node in &topology.nodes {
            let all = std::iter::once(&node.netns).chain(node.pods.iter().map(|p| &p.netns));
            missing_namespaces.extend(all.filter(|ns| !netns::netns_exists(ns)).cloned());
        }
    }
    Ok(Status {
        record,
        processes,
        missing_namespaces,
    })
}

/// The lab's directory for a `--dir` argument or the default.
pub fn dir_or_default(dir: Option<&Path>) -> PathBuf {
    dir.map_or_else(StateDir::default_root, Path::to_owned)
}

/// What `prune` removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Lab ids whose network was removed.
    pub labs: Vec<u8>,
    /// State directories of crashed labs that were taken down.
    pub dirs: Vec<PathBuf>,
}

/// Takes down what crashed labs left behind (a test killed with Ctrl-C never
/// runs its cleanup): a lab is dead when the process that built it is gone
/// and no process its state directory records still runs. Live labs, and
/// bridges that name no owner, are left alone.
pub fn prune() -> Result<Pruned> {
    let mut pruned = Pruned::default();
    for found in topology::find_labs() {
        let Some(owner) = found.owner else { continue };
        let builder_alive = Path::new(&format!("/proc/{}", owner.pid)).exists();
        let state = StateDir::at(&owner.dir);
        let recorded_alive = process::recorded(&state)
            .map(|ps| ps.iter().any(process::Recorded::is_running))
            .unwrap_or(false);
        if builder_alive || recorded_alive {
            continue;
        }
        if state.is_lab() {
            down(&state)?;
            pruned.dirs.push(owner.dir.clone());
        }
        topology::sweep(found.lab)?;
        pruned.labs.push(found.lab);
    }
    Ok(pruned)
}
