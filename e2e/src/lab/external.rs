//! External nodes of a running lab: hosts outside the cluster, each joined
//! as a user would join one.
//!
//! ```text
//!  topology: netns bh-L-xn-K (eth0 on the bridge, eth1 to a segment)
//!  kubectl-bulkhead externalnode add xn-K --address … --label … -o agent.yaml   (as the admin)
//!  ip netns exec bh-L-xn-K bulkhead-agent --config agent.yaml …                 (the host's own token)
//! ```
//!
//! The agent gets nothing from the lab but the file the CLI printed: its
//! credential is the host's ServiceAccount token, not a lab certificate.

use std::path::PathBuf;
use std::process::Command;

use super::Lab;
use crate::error::{Error, Result};
use crate::kubelet::Labels;
use crate::netns;
use crate::process::Process;
use crate::topology::ExternalHostNet;
use crate::wait::wait_until;

/// The heartbeat Lease duration the lab's hosts are joined with: short, so
/// a stopped agent turns `Ready=False` within seconds.
pub const LAB_LEASE_DURATION_SECS: u64 = 8;

/// The labels every lab external node gets besides `host=<name>`.
pub fn external_node_labels() -> Labels {
    crate::kubelet::labels([("location", "dc-1"), ("tier", "external")])
}

impl Lab {
    /// Adds `count` external hosts after those there are, joins each with
    /// `kubectl bulkhead externalnode add` and starts its agent.
    pub fn add_external_nodes(&mut self, count: u8) -> Result<Vec<ExternalHostNet>> {
        let first = self.topology().external_hosts.len() as u8 + 1;
        let mut added = Vec::new();
        for index in first..first + count {
            let host = self
                .topology
                .as_mut()
                .ok_or_else(|| Error::Topology("the lab has no topology".into()))?
                .add_external_host(index)?;
            self.save()?;
            self.join_external_node(&host)?;
            self.start_external_agent(&host.name)?;
            added.push(host);
        }
        Ok(added)
    }

    pub fn external_host(&self, name: &str) -> Result<&ExternalHostNet> {
        self.topology()
            .external_host(name)
            .ok_or_else(|| Error::Topology(format!("no external host {name}")))
    }

    /// Where the host's files go: its agent.yaml, flow log.
    pub fn external_dir(&self, name: &str) -> PathBuf {
        self.state().root().join("external").join(name)
    }

    /// The config file `externalnode add` printed for the host.
    pub fn external_config(&self, name: &str) -> PathBuf {
        self.external_dir(name).join("agent.yaml")
    }

    fn join_external_node(&self, host: &ExternalHostNet) -> Result<()> {
        let dir = self.external_dir(&host.name);
        std::fs::create_dir_all(&dir).map_err(Error::io("create", dir.clone()))?;
        let mut cmd = Command::new(self.project.cli());
        cmd.env("KUBECONFIG", self.plane().admin_kubeconfig())
            .args(["externalnode", "add", &host.name])
            .arg(format!("--address={}", host.address))
            .arg(format!("--address={}", host.segment_address))
            .arg(format!("--label=host={}", host.name))
            .arg(format!("--lease-duration-secs={LAB_LEASE_DURATION_SECS}"))
            .arg(format!(
                "--output={}",
                self.external_config(&host.name).display()
            ));
        for (k, v) in external_node_labels() {
            cmd.arg(format!("--label={k}={v}"));
        }
        let out = cmd.output().map_err(|source| Error::Spawn {
            program: self.project.cli().display().to_string(),
            source,
        })?;
        if !out.status.success() {
            return Err(Error::Command {
                command: format!("kubectl-bulkhead externalnode add {}", host.name),
                status: format!("{}", out.status),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(())
    }

    /// Starts the host's agent in its namespace, with the config file and
    /// the lab's bpffs (its own pin directory).
    pub fn start_external_agent(&mut self, name: &str) -> Result<()> {
        let host = self.external_host(name)?.clone();
        if !netns::is_mount_point(&self.bpffs) {
            netns::mount_bpffs(&self.bpffs)?;
        }
        let dir = self.external_dir(name);
        let mut cmd = netns::command_in(&host.netns, &self.project.agent);
        cmd.env("NO_COLOR", "1")
            .env(
                "RUST_LOG",
                std::env::var("BULKHEAD_AGENT_LOG").unwrap_or_else(|_| "info".into()),
            )
            .arg(format!("--config={}", self.external_config(name).display()))
            .arg(format!("--bpffs={}", self.bpffs.display()))
            .arg(format!("--pin-name={name}"))
            .arg(format!("--flow-log={}", dir.join("flows.jsonl").display()))
            .arg(format!(
                "--metrics-addr={}:{}",
                host.address,
                crate::agent::AGENT_METRICS_PORT
            ))
            .arg("--flow-interval-ms=1000")
            .arg("--hits-interval-ms=1000");
        let process = Process::spawn(
            self.state(),
            &crate::agent::process_name(name),
            cmd,
            self.lifetime,
        )?;
        self.agents.insert(name.to_owned(), process);
        self.save()
    }

    /// Waits until the host's ExternalNode says `Ready` is `status`
    /// (`"True"` or `"False"`), and returns its Ready condition's reason.
    pub fn wait_external_ready(
        &self,
        name: &str,
        status: &str,
        timeout: std::time::Duration,
    ) -> Result<String> {
        let admin = self.kubectl();
        wait_until(
            &format!("ExternalNode {name} to be Ready={status}"),
            timeout,
            || {
                if status == "True" {
                    if let Some(dead) = self.dead_agent(name) {
                        return Ok(Some(Err(dead)));
                    }
                }
                let v = admin.json(&["get", "externalnode", name])?;
                let ready = v["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|c| c["type"] == "Ready")
                    .cloned();
                Ok(ready
                    .filter(|c| c["status"] == status)
                    .map(|c| Ok(c["reason"].as_str().unwrap_or_default().to_owned())))
            },
        )?
    }
}
