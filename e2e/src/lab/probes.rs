//! Real packets between the pods of a running lab.

use std::net::IpAddr;

use super::{split_key, Lab};
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
        )?;
        self.listeners.push((pod.key(), process));
        Ok(())
    }

    /// One request from pod `from` to pod `to` (`namespace/name` keys).
    pub fn probe(&self, from: &str, to: &str, proto: Proto, port: u16) -> Result<ProbeResult> {
        let (fns, fname) = split_key(from)?;
        let (tns, tname) = split_key(to)?;
        let src = self.pod(fns, fname)?;
        let dst = self.pod(tns, tname)?;
        traffic::probe(
            &src.netns,
            proto,
            IpAddr::V4(dst.address),
            port,
            traffic::PROBE_TIMEOUT,
        )
    }

    /// Many probes at once (each waits up to a second for its answer).
    pub fn probe_all(&self, probes: &[Probe]) -> Result<Vec<ProbeResult>> {
        std::thread::scope(|scope| {
            let running: Vec<_> = probes
                .iter()
                .map(|p| scope.spawn(move || self.probe(&p.from, &p.to, p.proto, p.port)))
                .collect();
            running
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::Unexpected {
                            what: "a probe".into(),
                            problem: "its thread panicked".into(),
                        })
                    })
                })
                .collect()
        })
    }
}
