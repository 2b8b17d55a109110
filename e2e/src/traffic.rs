//! Real packets between pods: a listener in one pod's namespace that answers
//! on TCP and UDP ports (and SCTP, on a raw socket), and probers in another
//! that say whether an answer came back within their timeout: one request,
//! or a batch of them at once from one pod. All are one Python program,
//! `scripts/traffic.py` (the datapath tests run it too), run with
//! `ip netns exec`, so what they see is what any workload would.
//!
//! SCTP without the kernel's SCTP module: the prober sends an INIT chunk
//! from a raw socket and waits for a packet from the destination with the
//! ports swapped; the listener's raw socket answers every INIT with an
//! INIT ACK. Both packets cross the datapath like any SCTP association's
//! first two would (it reads ports, not checksums).

use std::net::IpAddr;
use std::path::Path;
use std::process::Stdio;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::netns;
use crate::process::{Lifetime, Process};
use crate::state::StateDir;

/// The protocols the prober speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

/// The default time a probe waits for an answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The one traffic program of every test (scripts/traffic.py), run with
/// `python3 -c` so that the lab needs no checkout beside its binaries.
pub(crate) const TRAFFIC: &str = include_str!("../../scripts/traffic.py");

pub(crate) fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// The ports a listener answers on, per protocol.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ports {
    pub tcp: Vec<u16>,
    pub udp: Vec<u16>,
    pub sctp: Vec<u16>,
}

/// Starts a listener in `netns` on the given ports and waits until it is bound.
pub fn start_listener(
    state: &StateDir,
    name: &str,
    netns_name: &str,
    ports: &Ports,
    lifetime: Lifetime,
) -> Result<Process> {
    let list = |ports: &[u16]| {
        ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut cmd = netns::command_in(netns_name, python());
    cmd.args(["-u", "-c", TRAFFIC, "serve"])
        .args(["--tcp", &list(&ports.tcp), "--udp", &list(&ports.udp)])
        .args(["--sctp", &list(&ports.sctp), "--name", name]);
    let mut process = Process::spawn(state, &format!("listen-{name}"), cmd, lifetime)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(process.log_path()).unwrap_or_default();
        if log.lines().any(|l| l == "ready") {
            return Ok(process);
        }
        if !process.is_running() || Instant::now() > deadline {
            return Err(process.not_ready("binding its ports"));
        }
        sleep(Duration::from_millis(20));
    }
}

/// A long-lived TCP connection from inside `netns` to `addr:port` that
/// sends a request every 100 ms and logs, one line each, whether the answer
/// came (`answered`), did not come within 500 ms (`lost`), or the
/// connection ended (`closed`, `error ...`). Waits until it is connected.
pub fn start_conversation(
    state: &StateDir,
    name: &str,
    netns_name: &str,
    addr: IpAddr,
    port: u16,
) -> Result<Process> {
    let mut cmd = netns::command_in(netns_name, python());
    cmd.args(["-u", "-c", TRAFFIC, "conversation"])
        .args([addr.to_string(), port.to_string()]);
    let mut process = Process::spawn(
        state,
        &format!("conversation-{name}"),
        cmd,
        Lifetime::Attached,
    )?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(process.log_path()).unwrap_or_default();
        if log.lines().any(|l| l == "connected") {
            return Ok(process);
        }
        if !process.is_running() || Instant::now() > deadline {
            return Err(process.not_ready("connecting"));
        }
        sleep(Duration::from_millis(20));
    }
}

/// What one probe saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeResult {
    pub answered: bool,
    /// The listener's answer (`ok <name>`), or why there was none.
    pub detail: String,
}

/// Sends one request from inside `netns` to `addr:port` and waits up to
/// `timeout` for the answer (a batch of one).
pub fn probe(
    netns_name: &str,
    proto: Proto,
    addr: IpAddr,
    port: u16,
    timeout: Duration,
) -> Result<ProbeResult> {
    let mut results = probe_batch(netns_name, &[(proto, addr, port)], timeout)?;
    Ok(results.remove(0))
}

/// Sends every request of `targets` from inside `netns` at once, each on a
/// new socket (a new flow), and waits up to `timeout` for each answer.
/// Results come in the order of `targets`.
pub fn probe_batch(
    netns_name: &str,
    targets: &[(Proto, IpAddr, u16)],
    timeout: Duration,
) -> Result<Vec<ProbeResult>> {
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let mut cmd = netns::command_in(netns_name, python());
    cmd.args([
        "-c",
        TRAFFIC,
        "batch",
        &format!("{:.3}", timeout.as_secs_f64()),
    ])
    .args(
        targets
            .iter()
            .map(|(proto, addr, port)| format!("{},{addr},{port}", proto.name())),
    )
    .stdin(Stdio::null());
    let command = || format!("{} probes from {netns_name}", targets.len());
    let out = cmd.output().map_err(|source| Error::Spawn {
        program: python().into(),
        source,
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let results: Vec<ProbeResult> = stdout
        .lines()
        .map(|line| {
            let (mark, detail) = line.split_once(' ').unwrap_or((line, ""));
            ProbeResult {
                answered: mark == "ok",
                detail: detail.to_owned(),
            }
        })
        .collect();
    if !out.status.success() || results.len() != targets.len() {
        return Err(Error::Command {
            command: command(),
            status: format!("{:?}", out.status.code()),
            stderr: format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr)),
        });
    }
    Ok(results)
}

/// Writes one packet with a forged source address from inside `netns` on a
/// raw socket, as a pod with NET_RAW can: a TCP SYN or a UDP datagram from
/// `source` to `destination:port`. Nothing answers it (an answer would go
/// to `source`).
pub fn forge(
    netns_name: &str,
    proto: Proto,
    source: IpAddr,
    destination: IpAddr,
    port: u16,
) -> Result<()> {
    let mut cmd = netns::command_in(netns_name, python());
    cmd.args(["-c", TRAFFIC, "forge", proto.name()])
        .args([
            source.to_string(),
            destination.to_string(),
            port.to_string(),
        ])
        .stdin(Stdio::null());
    let out = cmd.output().map_err(|source| Error::Spawn {
        program: python().into(),
        source,
    })?;
    if !out.status.success() {
        return Err(Error::Command {
            command: format!("a forged {} packet from {netns_name}", proto.name()),
            status: format!("{:?}", out.status.code()),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(())
}
