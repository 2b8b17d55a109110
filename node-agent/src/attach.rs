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
        let pin = self
            // bpffs refuses names with dots.
            .links_dir
            .join(format!("{interface}_{index}_{}", hook.tag()));
        let name = hook.program();
        let perr = |source| Error::Program {
            program: name,
            source: Box::new(source),
        };
        let ierr = |message: String| Error::Interface {
            interface: interface.to_string(),
            message,
        };
        let prog = program(loaded, hook)?;
        let attachment = if let Ok(old) = PinnedLink::from_pin(&pin) {
            let link = SchedClassifierLink::try_from(FdLink::from(old))
                .map_err(|e| ierr(format!("pinned link {}: {e}", pin.display())))?;
            let id = prog.attach_to_link(link).map_err(perr)?;
            drop(prog.take_link(id).map_err(perr)?); // the pin keeps it alive
            Attachment::Pinned(pin)
        } else {
            let tcx = TcAttachOptions::TcxOrder(LinkOrder::default());
            match prog.attach_with_options(interface, hook.attach_type(), tcx) {
                Ok(id) => {
                    let link = prog.take_link(id).map_err(perr)?;
                    let fd_link =
                        FdLink::try_from(link).map_err(|e| ierr(format!("TCX link: {e}")))?;
                    fd_link.pin(&pin).map_err(|e| {
                        ierr(format!("pinning the TCX link at {}: {e:?}", pin.display()))
                    })?;
                    Attachment::Pinned(pin)
                }
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
    }
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
