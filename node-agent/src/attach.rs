//! Attaching the programs to interfaces: TCX links pinned under
//! `<pin dir>/links/` (so a restarted agent keeps enforcing and swaps the
//! program in place), or, on kernels without TCX, a clsact qdisc filter.
//!
//! ```text
//!  pod veth (host side):  TC ingress ─ bh_from_endpoint   TC egress ─ bh_to_endpoint
//!  host interface:        TC ingress ─ bh_host_ingress    TC egress ─ bh_host_egress
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::tc::{
    qdisc_add_clsact, NlOptions, SchedClassifierLink, SchedClassifierLinkId, TcAttachOptions,
};
use aya::programs::{LinkOrder, SchedClassifier, TcAttachType};

use crate::error::{Error, Result};
use crate::loader::{Loaded, FROM_ENDPOINT, HOST_EGRESS, HOST_INGRESS, TO_ENDPOINT};

/// Where a program sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hook {
    FromEndpoint,
    ToEndpoint,
    HostIngress,
    HostEgress,
}

impl Hook {
    pub const ENDPOINT: [Hook; 2] = [Hook::FromEndpoint, Hook::ToEndpoint];
    pub const HOST: [Hook; 2] = [Hook::HostIngress, Hook::HostEgress];

    pub fn program(self) -> &'static str {
        match self {
            Hook::FromEndpoint => FROM_ENDPOINT,
            Hook::ToEndpoint => TO_ENDPOINT,
            Hook::HostIngress => HOST_INGRESS,
            Hook::HostEgress => HOST_EGRESS,
        }
    }

    fn attach_type(self) -> TcAttachType {
        match self {
            Hook::FromEndpoint | Hook::HostIngress => TcAttachType::Ingress,
            Hook::ToEndpoint | Hook::HostEgress => TcAttachType::Egress,
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Hook::FromEndpoint => "from-endpoint",
            Hook::ToEndpoint => "to-endpoint",
            Hook::HostIngress => "host-ingress",
            Hook::HostEgress => "host-egress",
        }
    }
}

#[derive(Debug)]
enum Attachment {
    /// A TCX link, alive as long as its pin.
    Pinned(PathBuf),
    /// A legacy clsact filter, owned by the program.
    Netlink(SchedClassifierLinkId),
}

/// The agent's attachments, by (interface, hook).
#[derive(Debug)]
pub struct Attacher {
    links_dir: PathBuf,
    attached: BTreeMap<(String, Hook), Attachment>,
}

/// The kernel's index of an interface in this network namespace.
pub fn ifindex(interface: &str) -> Result<u32> {
    let path = Path::new("/sys/class/net").join(interface).join("ifindex");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::Interface {
        interface: interface.to_string(),
        message: format!("no such interface ({e})"),
    })?;
    text.trim().parse().map_err(|_| Error::Interface {
        interface: interface.to_string(),
        message: format!("unreadable ifindex {text:?}"),
    })
}

fn program(loaded: &mut Loaded, hook: Hook) -> Result<&mut SchedClassifier> {
    let ebpf = match hook {
        Hook::FromEndpoint | Hook::ToEndpoint => &mut loaded.endpoint,
        Hook::HostIngress | Hook::HostEgress => &mut loaded.host,
    };
    let name = hook.program();
    ebpf.program_mut(name)
        .ok_or(Error::MissingProgram(name))?
        .try_into()
        .map_err(|source| Error::Program {
            program: name,
            source: Box::new(source),
        })
}

impl Attacher {
    pub fn new(pin_dir: &Path) -> Result<Self> {
        let links_dir = pin_dir.join("links");
        std::fs::create_dir_all(&links_dir).map_err(|e| Error::Bpffs {
            path: links_dir.clone(),
            message: e.to_string(),
        })?;
        Ok(Attacher {
            links_dir,
            attached: BTreeMap::new(),
        })
    }

    pub fn is_attached(&self, interface: &str, hook: Hook) -> bool {
        self.attached.contains_key(&(interface.to_string(), hook))
    }

    /// Interfaces with at least one program of ours.
    pub fn interfaces(&self) -> Vec<String> {
        let mut v: Vec<String> = self.attached.keys().map(|(i, _)| i.clone()).collect();
        v.dedup();
        v
    }

    /// Attaches `hook`'s program to `interface`, reusing a pinned link of a
    /// previous run (replacing its program atomically) when there is one.
    pub fn attach(&mut self, loaded: &mut Loaded, interface: &str, hook: Hook) -> Result<()> {
        if self.is_attached(interface, hook) {
            return Ok(());
        }
        let index = ifindex(interface)?;
        let pin = link_pin(&self.links_dir, interface, index, hook);
        let name = hook.program();
        let perr = |source| Error::Program {
            program: name,
            source: Box::new(source),
        };
        let prog = program(loaded, hook)?;
        let attachment = match attach_pinned(prog, interface, hook, &pin)? {
            Ok(_) => Attachment::Pinned(pin),
            Err(tcx_error) => {
                tracing::info!(interface, %tcx_error, "TCX attach failed; falling back to clsact");
                if let Err(e) = qdisc_add_clsact(interface) {
                    tracing::debug!(interface, error = %e, "clsact qdisc (may already exist)");
                }
                let nl = TcAttachOptions::Netlink(NlOptions::default());
                Attachment::Netlink(
                    prog.attach_with_options(interface, hook.attach_type(), nl)
                        .map_err(perr)?,
                )
            }
        };
        tracing::info!(interface, program = name, "attached");
        self.attached
            .insert((interface.to_string(), hook), attachment);
        Ok(())
    }

    /// Detaches one program from one interface.
    pub fn detach(&mut self, loaded: &mut Loaded, interface: &str, hook: Hook) -> Result<()> {
        let Some(attachment) = self.attached.remove(&(interface.to_string(), hook)) else {
            return Ok(());
        };
        match attachment {
            Attachment::Pinned(pin) => {
                if let Ok(link) = PinnedLink::from_pin(&pin) {
                    // Dropping the last reference detaches the link.
                    drop(link.unpin());
                }
                std::fs::remove_file(&pin).ok();
            }
            Attachment::Netlink(id) => {
                let name = hook.program();
                program(loaded, hook)?
                    .detach(id)
                    .map_err(|source| Error::Program {
                        program: name,
                        source: Box::new(source),
                    })?;
            }
        }
        tracing::info!(interface, program = hook.program(), "detached");
        Ok(())
    }

    /// Detaches everything this agent attached.
    pub fn detach_all(&mut self, loaded: &mut Loaded) -> Result<()> {
        let keys: Vec<(String, Hook)> = self.attached.keys().cloned().collect();
        for (interface, hook) in keys {
            self.detach(loaded, &interface, hook)?;
        }
        // Pins of earlier runs for interfaces this run never saw.
        if let Ok(entries) = std::fs::read_dir(&self.links_dir) {
            for entry in entries.flatten() {
                if let Ok(link) = PinnedLink::from_pin(entry.path()) {
                    drop(link.unpin());
                }
                std::fs::remove_file(entry.path()).ok();
            }
        }
        Ok(())
    }

    /// Forgets attachments (and pins) of interfaces that no longer exist:
    /// the kernel already detached their programs when they went away.
    /// Also removes pins of links someone else attached (the CNI plugin) to
    /// an interface that went away before this agent adopted them.
    pub fn forget_vanished(&mut self) {
        let gone: Vec<(String, Hook)> = self
            .attached
            .keys()
            .filter(|(i, _)| ifindex(i).is_err())
            .cloned()
            .collect();
        for key in gone {
            if let Some(Attachment::Pinned(pin)) = self.attached.remove(&key) {
                std::fs::remove_file(pin).ok();
            }
            tracing::info!(interface = key.0, "interface gone");
        }
        let Ok(entries) = std::fs::read_dir(&self.links_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let mut parts = name.rsplitn(3, '_');
            let (_hook, index, interface) = (parts.next(), parts.next(), parts.next());
            let (Some(index), Some(interface)) = (index, interface) else {
                continue;
            };
            if index.parse::<u32>().ok() == ifindex(interface).ok() {
                continue;
            }
            if let Ok(link) = PinnedLink::from_pin(entry.path()) {
                drop(link.unpin());
            }
            std::fs::remove_file(entry.path()).ok();
            tracing::info!(
                pin = name,
                "removed the pin of a link whose interface is gone"
            );
        }
    }
}

/// Where the TCX link of `hook` on `interface` (ifindex `index`) is pinned:
/// `<links dir>/<interface>_<ifindex>_<hook>`. The agent and the CNI plugin
/// both pin there, so whichever comes second adopts the other's link.
pub fn link_pin(links_dir: &Path, interface: &str, index: u32, hook: Hook) -> PathBuf {
    // bpffs refuses names with dots.
    links_dir.join(format!("{interface}_{index}_{}", hook.tag()))
}

/// How [`attach_pinned`] attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pinned {
    /// A new TCX link, now pinned.
    Created,
    /// The link pinned there already (a previous run's, or the CNI
    /// plugin's), its program replaced atomically by `prog`.
    Adopted,
}

/// Puts `prog` at `hook` of `interface` through the TCX link pinned at
/// `pin`: adopts the link found there, or attaches a new one and pins it.
/// Two attachers racing for one interface (the agent's poll and the CNI
/// plugin) end with one link: the one that loses the pin detaches its own
/// and adopts the winner's. The inner error is TCX itself failing (a kernel
/// before 6.6), for the caller to fall back or give up.
pub fn attach_pinned(
    prog: &mut SchedClassifier,
    interface: &str,
    hook: Hook,
    pin: &Path,
) -> Result<std::result::Result<Pinned, aya::programs::ProgramError>> {
    let name = hook.program();
    let perr = |source| Error::Program {
        program: name,
        source: Box::new(source),
    };
    let ierr = |message: String| Error::Interface {
        interface: interface.to_string(),
        message,
    };
    let adopt = |prog: &mut SchedClassifier, old: PinnedLink| -> Result<Pinned> {
        let link = SchedClassifierLink::try_from(FdLink::from(old))
            .map_err(|e| ierr(format!("pinned link {}: {e}", pin.display())))?;
        let id = prog.attach_to_link(link).map_err(perr)?;
        drop(prog.take_link(id).map_err(perr)?); // the pin keeps it alive
        Ok(Pinned::Adopted)
    };
    if let Ok(old) = PinnedLink::from_pin(pin) {
        return adopt(prog, old).map(Ok);
    }
    let tcx = TcAttachOptions::TcxOrder(LinkOrder::default());
    let id = match prog.attach_with_options(interface, hook.attach_type(), tcx) {
        Ok(id) => id,
        Err(tcx_error) => return Ok(Err(tcx_error)),
    };
    let link = prog.take_link(id).map_err(perr)?;
    let fd_link = FdLink::try_from(link).map_err(|e| ierr(format!("TCX link: {e}")))?;
    match fd_link.pin(pin) {
        Ok(_) => Ok(Ok(Pinned::Created)),
        Err(e) => {
            // Pinned meanwhile by the other attacher: ours was dropped with
            // the failed pin (its last reference), so adopt theirs.
            if let Ok(old) = PinnedLink::from_pin(pin) {
                return adopt(prog, old).map(Ok);
            }
            Err(ierr(format!(
                "pinning the TCX link at {}: {e:?}",
                pin.display()
            )))
        }
    }
}

/// The ifindex of every interface in this network namespace.
pub fn present_ifindexes() -> std::collections::BTreeSet<u32> {
    let Ok(entries) = std::fs::read_dir("/sys/class/net") else {
        return Default::default();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|name| ifindex(&name).ok())
        .collect()
}

/// Interfaces in this network namespace whose name starts with one of `prefixes`.
pub fn interfaces_with_prefix(prefixes: &[String]) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| prefixes.iter().any(|p| name.starts_with(p.as_str())))
        .collect();
    out.sort();
    out
}
