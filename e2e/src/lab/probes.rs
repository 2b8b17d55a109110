//! Real packets between the pods of a running lab.

use std::fmt::Write;
use std::net::IpAddr;

use super::{split_key, Lab, LabPod};
use crate::error::{Error, Result};
use crate::traffic::{self, ProbeResult, Proto};

/// One request to send: from pod, to pod (`namespace/name`), protocol, port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub from: String,
    pub to: String,
    pub proto: Proto,
    pub port: u16,
}

impl Probe {
    pub fn tcp(from: &str, to: &str, port: u16) -> Self {
        Self {
            from: from.to_owned(),
            to: to.to_owned(),
            proto: Proto::Tcp,
            port,
        }
    }

    pub fn udp(from: &str, to: &str, port: u16) -> Self {
        Self {
            proto: Proto::Udp,
            ..Self::tcp(from, to, port)
        }
    }
}

impl Lab {
    // ---- traffic -----------------------------------------------------------

    /// Starts a listener in a pod that answers on these ports until the lab ends.
    pub fn listen(&mut self, namespace: &str, name: &str, tcp: &[u16], udp: &[u16]) -> Result<()> {
        let pod = self.pod(namespace, name)?.clone();
        let process = traffic::start_listener(
            self.state(),
            &format!("{}-{}", pod.namespace, pod.name),
            &pod.netns,
            tcp,
            udp,
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
            },
        )
    }

    /// Many probes at once (each waits up to a second for its answer).
    pub fn probe_all(&self, probes: &[Probe]) -> Result<Vec<ProbeResult>> {
        let pods: Vec<LabPod> = self.pods.values().cloned().collect();
        probe_all(&pods, probes)
    }
}

/// One probe between two of `pods`.
pub fn probe_between(pods: &[LabPod], probe: &Probe) -> Result<ProbeResult> {
    let find = |key: &str| -> Result<&LabPod> {
        let (ns, name) = split_key(key)?;
        pods.iter()
            .find(|p| p.namespace == ns && p.name == name)
            .ok_or_else(|| Error::Topology(format!("no pod {key} in the lab")))
    };
    let src = find(&probe.from)?;
    let dst = find(&probe.to)?;
    traffic::probe(
        &src.netns,
        probe.proto,
        IpAddr::V4(dst.address),
        probe.port,
        traffic::PROBE_TIMEOUT,
    )
}

/// Many probes between `pods` at once.
pub fn probe_all(pods: &[LabPod], probes: &[Probe]) -> Result<Vec<ProbeResult>> {
    let mut results = Vec::with_capacity(probes.len());
    // Bounded: a hundred interpreters starting at once on a small machine
    // would miss their own one-second deadline.
    for batch in probes.chunks(PARALLEL_PROBES) {
        std::thread::scope(|scope| {
            let running: Vec<_> = batch
                .iter()
                .map(|p| scope.spawn(move || probe_between(pods, p)))
                .collect();
            for handle in running {
                results.push(handle.join().unwrap_or_else(|_| {
                    Err(Error::Unexpected {
                        what: "a probe".into(),
                        problem: "its thread panicked".into(),
                    })
                }));
            }
        });
    }
    results.into_iter().collect()
}

/// How many probes run at once.
const PARALLEL_PROBES: usize = 12;

/// Who reaches whom among `pods` on one port, with real packets, as a
/// matrix laid out like `kubectl-bulkhead simulate --matrix`:
/// `.` answered, `X` no answer, `-` self.
pub fn matrix(pods: &[LabPod], proto: Proto, port: u16) -> Result<String> {
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
        "{port}/{}  (rows: from, columns: to; real packets)\n",
        proto.name().to_uppercase()
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
