//! Real packets between the pods of a running lab.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::IpAddr;

use std::time::Duration;

use super::{split_key, Lab, LabPod};
use crate::error::{Error, Result};
use crate::process::Process;
use crate::traffic::{self, ProbeResult, Proto};
use crate::wait::wait_until;

/// One request to send: from pod, to pod (`namespace/name`), protocol, port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub from: String,
    pub to: String,
    pub proto: Proto,
    pub port: u16,
    /// Over IPv6 (to the destination's IPv6 address) instead of IPv4.
    pub v6: bool,
}

impl Probe {
    /// A probe over IPv4.
    pub fn new(from: &str, to: &str, proto: Proto, port: u16) -> Self {
        Self {
            from: from.to_owned(),
            to: to.to_owned(),
            proto,
            port,
            v6: false,
        }
    }

    pub fn tcp(from: &str, to: &str, port: u16) -> Self {
        Self::new(from, to, Proto::Tcp, port)
    }

    /// The same probe over IPv6.
    pub fn v6(self) -> Self {
        Self { v6: true, ..self }
    }

    pub fn udp(from: &str, to: &str, port: u16) -> Self {
        Self::new(from, to, Proto::Udp, port)
    }
}

impl Lab {
    // ---- traffic -----------------------------------------------------------

    /// Starts a listener in a pod that answers on these TCP and UDP ports
    /// until the lab ends.
    pub fn listen(&mut self, namespace: &str, name: &str, tcp: &[u16], udp: &[u16]) -> Result<()> {
        let ports = traffic::Ports {
            tcp: tcp.to_vec(),
            udp: udp.to_vec(),
            sctp: Vec::new(),
        };
        self.listen_on(namespace, name, &ports)
    }

    /// Starts a listener in a pod that answers on `ports` until the lab ends.
    pub fn listen_on(&mut self, namespace: &str, name: &str, ports: &traffic::Ports) -> Result<()> {
        let pod = self.pod(namespace, name)?.clone();
        let process = traffic::start_listener(
            self.state(),
            &format!("{}-{}", pod.namespace, pod.name),
            &pod.netns,
            ports,
            self.lifetime,
        )?;
        self.listeners.push((pod.key(), process));
        Ok(())
    }

    /// One request from pod `from` to pod `to` (`namespace/name` keys).
    pub fn probe(&self, from: &str, to: &str, proto: Proto, port: u16) -> Result<ProbeResult> {
        let pods: Vec<LabPod> = self.pods.values().cloned().collect();
        probe_between(
            &pods,
            &Probe {
                from: from.into(),
                to: to.into(),
                proto,
                port,
                v6: false,
            },
        )
    }

    /// Opens a long-lived TCP connection from pod `from` to pod `to` that
    /// exchanges a request and an answer every 100 ms until dropped.
    pub fn converse(&self, from: &str, to: &str, port: u16) -> Result<Conversation> {
        let (fns, fname) = split_key(from)?;
        let (tns, tname) = split_key(to)?;
        let src = self.pod(fns, fname)?;
        let dst = self.pod(tns, tname)?;
        let process = traffic::start_conversation(
            self.state(),
            &format!(
                "{}-{}-to-{}-{}",
                src.namespace, src.name, dst.namespace, dst.name
            ),
            &src.netns,
            IpAddr::V4(dst.address),
            port,
        )?;
        Ok(Conversation { process })
    }

    /// A long-lived connection like [`Lab::converse`], to an address (a
    /// ClusterIP) rather than a pod.
    pub fn converse_address(&self, from: &str, addr: IpAddr, port: u16) -> Result<Conversation> {
        let (fns, fname) = split_key(from)?;
        let src = self.pod(fns, fname)?;
        let process = traffic::start_conversation(
            self.state(),
            &format!("{}-{}-to-{addr}", src.namespace, src.name),
            &src.netns,
            addr,
            port,
        )?;
        Ok(Conversation { process })
    }

    /// One packet from pod `from`'s network namespace with a forged source
    /// address (see [`traffic::forge`]).
    pub fn forge(
        &self,
        from: &str,
        proto: Proto,
        source: IpAddr,
        destination: IpAddr,
        port: u16,
    ) -> Result<()> {
        let (ns, name) = split_key(from)?;
        traffic::forge(&self.pod(ns, name)?.netns, proto, source, destination, port)
    }

    /// Many probes at once (each waits up to a second for its answer).
    pub fn probe_all(&self, probes: &[Probe]) -> Result<Vec<ProbeResult>> {
        let pods: Vec<LabPod> = self.pods.values().cloned().collect();
        probe_all(&pods, probes)
    }

    /// Many probes at once, like [`Lab::probe_all`], each sent to the
    /// address beside it (a ClusterIP in front of `to`) when there is one,
    /// to `to` itself otherwise.
    pub fn probe_all_via(&self, probes: &[(Probe, Option<IpAddr>)]) -> Result<Vec<ProbeResult>> {
        let pods: Vec<LabPod> = self.pods.values().cloned().collect();
        probe_all_to(&pods, probes.iter().map(|(p, via)| (p, *via)))
    }
}

/// A long-lived connection between two pods (see `Lab::converse`).
#[derive(Debug)]
pub struct Conversation {
    process: Process,
}

impl Conversation {
    /// Every exchange so far: `answered`, `lost`, `closed` or `error ...`.
    pub fn exchanges(&self) -> Vec<String> {
        std::fs::read_to_string(self.process.log_path())
            .unwrap_or_default()
            .lines()
            .filter(|l| *l != "connected")
            .map(str::to_owned)
            .collect()
    }

    /// Waits until the last `run` exchanges were all answered.
    pub fn wait_answering(&self, run: usize, timeout: Duration) -> Result<()> {
        self.wait(
            &format!("{run} answers in a row"),
            timeout,
            |tail| tail.len() == run && tail.iter().all(|l| l == "answered"),
            run,
        )
    }

    /// Waits until the last `run` exchanges went unanswered, or the
    /// connection ended.
    pub fn wait_silent(&self, run: usize, timeout: Duration) -> Result<()> {
        self.wait(
            &format!("{run} unanswered exchanges in a row"),
            timeout,
            |tail| {
                let ended = tail
                    .last()
                    .is_some_and(|l| l == "closed" || l.starts_with("error"));
                (tail.len() == run || ended) && tail.iter().all(|l| l != "answered")
            },
            run,
        )
    }

    fn wait(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[String]) -> bool,
        run: usize,
    ) -> Result<()> {
        wait_until(what, timeout, || {
            let all = self.exchanges();
            Ok(done(&all[all.len().saturating_sub(run)..]).then_some(()))
        })
    }
}

/// One probe between two of `pods`.
pub fn probe_between(pods: &[LabPod], probe: &Probe) -> Result<ProbeResult> {
    let mut results = probe_all(pods, std::slice::from_ref(probe))?;
    Ok(results.remove(0))
}

/// Where one request goes: protocol, address, port.
type Target = (Proto, IpAddr, u16);

/// Many probes between `pods` at once: one prober per source pod sends all
/// of that pod's requests together (each on a new socket), every source at
/// the same time. Results come in the order of `probes`.
pub fn probe_all(pods: &[LabPod], probes: &[Probe]) -> Result<Vec<ProbeResult>> {
    probe_all_to(pods, probes.iter().map(|p| (p, None)))
}

/// [`probe_all`], with an address to send each probe to instead of its
/// destination pod's where one is given.
fn probe_all_to<'p>(
    pods: &[LabPod],
    probes: impl ExactSizeIterator<Item = (&'p Probe, Option<IpAddr>)>,
) -> Result<Vec<ProbeResult>> {
    let count = probes.len();
    let find = |key: &str| -> Result<&LabPod> {
        let (ns, name) = split_key(key)?;
        pods.iter()
            .find(|p| p.namespace == ns && p.name == name)
            .ok_or_else(|| Error::Topology(format!("no pod {key} in the lab")))
    };
    // Source netns → (index in `probes`, target).
    let mut by_source: BTreeMap<&str, Vec<(usize, Target)>> = BTreeMap::new();
    for (i, (probe, via)) in probes.enumerate() {
        let src = find(&probe.from)?;
        let dst = find(&probe.to)?;
        let addr = match via {
            Some(addr) => addr,
            None if probe.v6 => IpAddr::V6(dst.address6),
            None => IpAddr::V4(dst.address),
        };
        by_source
            .entry(src.netns.as_str())
            .or_default()
            .push((i, (probe.proto, addr, probe.port)));
    }
    let mut results: Vec<Option<ProbeResult>> = vec![None; count];
    std::thread::scope(|scope| -> Result<()> {
        let running: Vec<_> = by_source
            .iter()
            .map(|(netns, batch)| {
                let targets: Vec<_> = batch.iter().map(|(_, t)| *t).collect();
                let handle = scope
                    .spawn(move || traffic::probe_batch(netns, &targets, traffic::PROBE_TIMEOUT));
                (batch, handle)
            })
            .collect();
        for (batch, handle) in running {
            let answers = handle.join().unwrap_or_else(|_| {
                Err(Error::Unexpected {
                    what: "a prober".into(),
                    problem: "its thread panicked".into(),
                })
            })?;
            for ((i, _), answer) in batch.iter().zip(answers) {
                results[*i] = Some(answer);
            }
        }
        Ok(())
    })?;
    Ok(results.into_iter().flatten().collect())
}

/// Who reaches whom among `pods` on one port, with real packets, as a
/// matrix laid out like `kubectl-bulkhead simulate --matrix`:
/// `.` answered, `X` no answer, `-` self.
pub fn matrix(pods: &[LabPod], proto: Proto, port: u16, v6: bool) -> Result<String> {
    let mut pods = pods.to_vec();
    pods.sort_by_key(LabPod::key);
    let probes: Vec<Probe> = pods
        .iter()
        .flat_map(|from| {
            pods.iter()
                .filter(move |to| *to != from)
                .map(move |to| Probe {
                    from: from.key(),
                    to: to.key(),
                    proto,
                    port,
                    v6,
                })
        })
        .collect();
    let results = probe_all(&pods, &probes)?;
    let answered = |from: &LabPod, to: &LabPod| {
        probes
            .iter()
            .zip(&results)
            .find(|(p, _)| p.from == from.key() && p.to == to.key())
            .is_some_and(|(_, r)| r.answered)
    };
    let width = pods.iter().map(|p| p.key().len()).max().unwrap_or(0);
    let mut out = format!(
        "{port}/{}  over IPv{}  (rows: from, columns: to; real packets)\n",
        proto.name().to_uppercase(),
        if v6 { 6 } else { 4 }
    );
    let cell = pods.len().to_string().len();
    let _ = write!(out, "{:>w$}", "", w = width + 4);
    for i in 1..=pods.len() {
        let _ = write!(out, " {i:>cell$}");
    }
    out.push('\n');
    let (mut passed, mut dropped) = (0, 0);
    for (i, from) in pods.iter().enumerate() {
        let _ = write!(out, "{:<3}{:<w$} ", i + 1, from.key(), w = width);
        for to in &pods {
            let mark = if to == from {
                "-"
            } else if answered(from, to) {
                passed += 1;
                "."
            } else {
                dropped += 1;
                "X"
            };
            let _ = write!(out, " {mark:>cell$}");
        }
        out.push('\n');
    }
    let _ = writeln!(out, "{passed} answered, {dropped} without answer");
    Ok(out)
}
