//! Loading the embedded objects with aya: bpffs, the pin directory of this
//! layout version, load-time globals, and the programs themselves.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aya::programs::SchedClassifier;
use aya::{Ebpf, EbpfLoader};
use ipnet::IpNet;

use crate::error::{Error, Result};
use crate::layout::LAYOUT_VERSION;

static ENDPOINT_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bpf_endpoint.o"));
static HOST_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bpf_host.o"));

/// The compiled objects, for tests that read their BTF.
pub fn objects() -> [(&'static str, &'static [u8]); 2] {
    [
        ("bpf_endpoint.o", ENDPOINT_OBJECT),
        ("bpf_host.o", HOST_OBJECT),
    ]
}

/// Program names in the objects.
pub const FROM_ENDPOINT: &str = "bh_from_endpoint";
pub const TO_ENDPOINT: &str = "bh_to_endpoint";
pub const HOST_INGRESS: &str = "bh_host_ingress";
pub const HOST_EGRESS: &str = "bh_host_egress";

/// `<pin dir>/progs`: the endpoint programs, pinned by the agent once its
/// maps are programmed, for the CNI plugin to attach at veth creation.
pub fn progs_dir(pin_dir: &Path) -> PathBuf {
    pin_dir.join("progs")
}

/// The pin of one endpoint program (`FROM_ENDPOINT` or `TO_ENDPOINT`).
pub fn program_pin(pin_dir: &Path, program: &str) -> PathBuf {
    progs_dir(pin_dir).join(program)
}

/// Pins the loaded endpoint programs under [`progs_dir`], replacing an
/// earlier agent's: pinned beside it, then renamed over it, so the path
/// never goes missing while a CNI plugin may look.
pub fn pin_endpoint_programs(loaded: &mut Loaded) -> Result<()> {
    let dir = progs_dir(&loaded.pin_dir);
    let bpffs_err = |path: &Path, message: String| Error::Bpffs {
        path: path.to_path_buf(),
        message,
    };
    std::fs::create_dir_all(&dir).map_err(|e| bpffs_err(&dir, e.to_string()))?;
    for name in [FROM_ENDPOINT, TO_ENDPOINT] {
        let program: &mut SchedClassifier = loaded
            .endpoint
            .program_mut(name)
            .ok_or(Error::MissingProgram(name))?
            .try_into()
            .map_err(|source| Error::Program {
                program: name,
                source: Box::new(source),
            })?;
        let pin = program_pin(&loaded.pin_dir, name);
        // bpffs refuses names with dots.
        let fresh = dir.join(format!("{name}-new"));
        std::fs::remove_file(&fresh).ok();
        program
            .pin(&fresh)
            .map_err(|e| bpffs_err(&fresh, format!("pinning {name}: {e}")))?;
        std::fs::rename(&fresh, &pin)
            .map_err(|e| bpffs_err(&pin, format!("replacing the pin of {name}: {e}")))?;
    }
    Ok(())
}

/// Load-time settings.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Where bpffs is (mounted there if it is not).
    pub bpffs: PathBuf,
    /// Directory under bpffs; the layout version is appended.
    pub pin_name: String,
    /// Conntrack entries idle longer than this are forgotten.
    pub ct_timeout: Duration,
    /// TCP entries that saw FIN or RST are forgotten this long after their last packet.
    pub ct_closing_timeout: Duration,
    /// Drop packets whose source address is not their sender's (on by default).
    pub anti_spoofing: bool,
    /// Drop packets of a guarded pod interface that no endpoint owns (on
    /// by default; `bpf/lib/guard.h`).
    pub guard_interfaces: bool,
    /// Report the first packet of every allowed flow (denies always are).
    pub emit_new_flows: bool,
    /// How often an established flow reports its counters.
    pub report_interval: Duration,
    /// Capacity of the policy map (entries after flattening), of each slot.
    pub policy_max_entries: u32,
    /// Capacity of the conntrack table of full-mode endpoints' flows.
    pub conntrack_max_entries: u32,
    /// The cluster's Service ranges (at most one per family): a pod's
    /// egress to an address in them is judged on the backend kube-proxy
    /// translates it to, not on the Service address (bpf/lib/service.h).
    pub service_cidrs: Vec<IpNet>,
    /// The layout version the pins go under: [`LAYOUT_VERSION`]. Only a
    /// test posing as an agent of an older layout sets a lower one.
    pub layout_version: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            bpffs: PathBuf::from("/sys/fs/bpf"),
            pin_name: "bulkhead".to_string(),
            ct_timeout: Duration::from_secs(600),
            ct_closing_timeout: Duration::from_secs(10),
            anti_spoofing: true,
            guard_interfaces: true,
            emit_new_flows: true,
            report_interval: Duration::from_secs(5),
            policy_max_entries: 262_144,
            conntrack_max_entries: 131_072,
            service_cidrs: Vec::new(),
            layout_version: LAYOUT_VERSION,
        }
    }
}

impl LoadOptions {
    /// `/sys/fs/bpf/bulkhead/v<layout version>`.
    pub fn pin_dir(&self) -> PathBuf {
        self.pin_root().join(format!("v{}", self.layout_version))
    }

    /// `/sys/fs/bpf/bulkhead`: the pin directories of every layout version.
    pub fn pin_root(&self) -> PathBuf {
        self.bpffs.join(&self.pin_name)
    }
}

/// Both objects, loaded, sharing their pinned maps.
#[derive(Debug)]
pub struct Loaded {
    pub endpoint: Ebpf,
    pub host: Ebpf,
    pub pin_dir: PathBuf,
}

/// Mounts bpffs if needed, loads both objects and their programs.
pub fn load(opts: &LoadOptions) -> Result<Loaded> {
    ensure_bpffs(&opts.bpffs)?;
    let pin_dir = opts.pin_dir();
    std::fs::create_dir_all(&pin_dir).map_err(|e| Error::Bpffs {
        path: pin_dir.clone(),
        message: format!("creating the pin directory: {e}"),
    })?;
    let mut endpoint = load_object("bpf_endpoint.o", ENDPOINT_OBJECT, opts, &pin_dir)?;
    let mut host = load_object("bpf_host.o", HOST_OBJECT, opts, &pin_dir)?;
    for name in [FROM_ENDPOINT, TO_ENDPOINT] {
        load_program(&mut endpoint, name)?;
    }
    for name in [HOST_INGRESS, HOST_EGRESS] {
        load_program(&mut host, name)?;
    }
    Ok(Loaded {
        endpoint,
        host,
        pin_dir,
    })
}

fn load_object(
    object: &'static str,
    bytes: &[u8],
    opts: &LoadOptions,
    pin_dir: &Path,
) -> Result<Ebpf> {
    let timeout = u64::try_from(opts.ct_timeout.as_nanos()).unwrap_or(u64::MAX);
    let closing = u64::try_from(opts.ct_closing_timeout.as_nanos()).unwrap_or(u64::MAX);
    let spoofing = u32::from(opts.anti_spoofing);
    let guard = u32::from(opts.guard_interfaces);
    let emit = u32::from(opts.emit_new_flows);
    let report = u64::try_from(opts.report_interval.as_nanos()).unwrap_or(u64::MAX);
    let svc = ServiceRanges::new(&opts.service_cidrs)?;
    EbpfLoader::new()
        .default_map_pin_directory(pin_dir)
        .map_max_entries("bh_policy_a", opts.policy_max_entries)
        .map_max_entries("bh_policy_b", opts.policy_max_entries)
        .map_max_entries("bh_conntrack", opts.conntrack_max_entries)
        .map_max_entries("bh_rule_hits", rule_hits_capacity(opts.policy_max_entries))
        .override_global("bh_cfg_ct_timeout_ns", &timeout, true)
        .override_global("bh_cfg_ct_closing_timeout_ns", &closing, true)
        .override_global("bh_cfg_anti_spoofing", &spoofing, true)
        .override_global("bh_cfg_guard_interfaces", &guard, true)
        .override_global("bh_cfg_emit_new_flows", &emit, true)
        .override_global("bh_cfg_report_interval_ns", &report, true)
        .override_global("bh_cfg_svc_v4", &svc.v4, true)
        .override_global("bh_cfg_svc_v4_len", &svc.v4_len, true)
        .override_global("bh_cfg_svc_v6", &svc.v6, true)
        .override_global("bh_cfg_svc_v6_len", &svc.v6_len, true)
        .load(bytes)
        .map_err(|source| Error::Load {
            object,
            source: Box::new(source),
        })
}

/// Capacity of `bh_rule_hits`: every rule that decides anything is the
/// value of a policy entry of one of the two slots, so twice a slot's
/// capacity holds them all, however many rules there are (no cap of its own).
pub fn rule_hits_capacity(policy_max_entries: u32) -> u32 {
    policy_max_entries.saturating_mul(2)
}

/// The Service ranges as the programs' globals: network-order bytes and a
/// prefix length, 0 for a family with none.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ServiceRanges {
    /// The IPv4 network's four bytes, as a native-endian u32 whose memory
    /// holds them in network order (the C side compares raw words).
    pub v4: u32,
    pub v4_len: u32,
    pub v6: [u8; 16],
    pub v6_len: u32,
}

impl ServiceRanges {
    /// At most one range per family (kube-apiserver's
    /// `--service-cluster-ip-range` takes one of each).
    pub fn new(cidrs: &[IpNet]) -> Result<Self> {
        let mut r = ServiceRanges::default();
        let (mut seen4, mut seen6) = (false, false);
        for cidr in cidrs {
            match cidr.trunc() {
                IpNet::V4(n) => {
                    if std::mem::replace(&mut seen4, true) {
                        return Err(Error::ServiceCidrs(format!(
                            "more than one IPv4 Service range ({cidrs:?})"
                        )));
                    }
                    r.v4 = u32::from_ne_bytes(n.network().octets());
                    r.v4_len = u32::from(n.prefix_len());
                }
                IpNet::V6(n) => {
                    if std::mem::replace(&mut seen6, true) {
                        return Err(Error::ServiceCidrs(format!(
                            "more than one IPv6 Service range ({cidrs:?})"
                        )));
                    }
                    r.v6 = n.network().octets();
                    r.v6_len = u32::from(n.prefix_len());
                }
            }
            if cidr.prefix_len() == 0 {
                return Err(Error::ServiceCidrs(format!(
                    "{cidr} covers every address; a Service range must be a proper prefix"
                )));
            }
        }
        Ok(r)
    }
}

fn load_program(ebpf: &mut Ebpf, name: &'static str) -> Result<()> {
    let program: &mut SchedClassifier = ebpf
        .program_mut(name)
        .ok_or(Error::MissingProgram(name))?
        .try_into()
        .map_err(|source| Error::Program {
            program: name,
            source: Box::new(source),
        })?;
    program.load().map_err(|source| Error::Program {
        program: name,
        source: Box::new(source),
    })
}

/// Mounts bpffs at `path` unless it is already there (`ip netns exec`
/// remounts /sys and hides the host's). Uses mount(8), which keeps this
/// crate's unsafe code to the `Pod` impls.
pub fn ensure_bpffs(path: &Path) -> Result<()> {
    let err = |message: String| Error::Bpffs {
        path: path.to_path_buf(),
        message,
    };
    std::fs::create_dir_all(path).map_err(|e| err(format!("creating it: {e}")))?;
    if is_bpffs(path) {
        return Ok(());
    }
    let out = std::process::Command::new("mount")
        .args(["-t", "bpf", "bpf"])
        .arg(path)
        .output()
        .map_err(|e| err(format!("running mount: {e}")))?;
    if !out.status.success() || !is_bpffs(path) {
        return Err(err(format!(
            "mounting bpffs failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn is_bpffs(path: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return false;
    };
    let want = path.to_string_lossy();
    mounts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let (_, mount_point, fs_type) = (fields.next(), fields.next(), fields.next());
        mount_point == Some(want.as_ref()) && fs_type == Some("bpf")
    })
}
