//! Operator replicas and node agents of a running lab.

use std::time::Duration;

use super::{Lab, OPERATOR_READY_TIMEOUT};
use crate::agent::{self, AgentConfig, AgentMode};
use crate::collector::Collector;
use crate::error::{Error, Result};
use crate::netns;
use crate::operator::{Operator, OperatorConfig};
use crate::wait::wait_until;

impl Lab {
    // ---- operator ----------------------------------------------------------

    /// Starts an operator replica and waits until it is ready.
    pub fn start_operator(&mut self, name: &str) -> Result<()> {
        self.start_operator_with(name, &[])
    }

    /// Starts an operator replica with more flags and waits until it is ready.
    pub fn start_operator_with(&mut self, name: &str, extra_args: &[&str]) -> Result<()> {
        if self.operators.contains_key(name) {
            return Err(Error::Unexpected {
                what: format!("operator {name}"),
                problem: "runs already".into(),
            });
        }
        let config = OperatorConfig {
            name: name.to_owned(),
            binary: self.project.operator.clone(),
            kubeconfig: self.plane().operator_kubeconfig().to_owned(),
            lifetime: self.lifetime,
            extra_args: self.operator_args(extra_args),
        };
        let mut operator = Operator::start(self.state(), &config)?;
        operator.wait_ready(OPERATOR_READY_TIMEOUT)?;
        self.operators.insert(name.to_owned(), operator);
        self.save()
    }

    /// The chart's failsafe ports, the collector's URL for promotion gates
    /// when the lab runs a collector (as the chart wires it), and `extra_args`.
    fn operator_args(&self, extra_args: &[&str]) -> Vec<String> {
        // As the chart does: hosts in full mode keep the export to the
        // collector and the agents' metrics open.
        let mut args: Vec<String> = failsafe_ports()
            .iter()
            .map(|p| format!("--failsafe-port={p}"))
            .collect();
        if let Some(c) = &self.collector {
            args.push(format!("--collector-url={}", c.url()));
        }
        args.extend(extra_args.iter().map(|s| (*s).to_owned()));
        args
    }

    pub fn operator(&mut self, name: &str) -> Result<&mut Operator> {
        self.operators
            .get_mut(name)
            .ok_or_else(|| Error::Unexpected {
                what: format!("operator {name}"),
                problem: "is not running in this lab".into(),
            })
    }

    pub fn operator_names(&self) -> Vec<String> {
        self.operators.keys().cloned().collect()
    }

    /// Stops a replica with SIGTERM (a rolling update).
    pub fn stop_operator(&mut self, name: &str) -> Result<()> {
        let mut operator = self.take_operator(name)?;
        operator.stop()
    }

    /// Kills a replica with SIGKILL (a crash).
    pub fn kill_operator(&mut self, name: &str) -> Result<()> {
        let mut operator = self.take_operator(name)?;
        operator.kill()
    }

    fn take_operator(&mut self, name: &str) -> Result<Operator> {
        let operator = self
            .operators
            .remove(name)
            .ok_or_else(|| Error::Unexpected {
                what: format!("operator {name}"),
                problem: "is not running in this lab".into(),
            })?;
        self.save()?;
        Ok(operator)
    }

    // ---- agents ------------------------------------------------------------

    /// Starts every node's agent that is not running.
    pub fn start_agents(&mut self) -> Result<()> {
        for node in self.node_names() {
            if !self.agents.contains_key(&node) {
                self.start_agent(&node)?;
            }
        }
        Ok(())
    }

    /// Starts `node`'s agent (see `agent::start_agent`).
    pub fn start_agent(&mut self, node: &str) -> Result<()> {
        if !netns::is_mount_point(&self.bpffs) {
            netns::mount_bpffs(&self.bpffs)?;
            self.save()?;
        }
        let config = self.agent_config(node)?;
        if config.collector.is_some() {
            crate::collector::write_node_token(&self.kubectl(), node, &config.collector_token())?;
        }
        if self.agent_mode == AgentMode::Standalone {
            let admin = self.kubectl();
            wait_until(
                &format!("the operator to publish NodeRuleMap {node}"),
                Duration::from_secs(30),
                || {
                    let files = agent::write_standalone_files(&admin, &config)?;
                    Ok((files != agent::Files::NotPublished).then_some(()))
                },
            )?;
        }
        let process = agent::start_agent(self.state(), &config)?;
        self.agents.insert(node.to_owned(), process);
        // Flags it does not know, a kernel without BPF: it exits at once.
        std::thread::sleep(Duration::from_millis(300));
        if let Some(dead) = self.dead_agent(node) {
            return Err(dead);
        }
        self.save()
    }

    /// Stops `node`'s agent with SIGTERM; its programs stay attached and keep
    /// enforcing the last maps (they are pinned).
    pub fn stop_agent(&mut self, node: &str) -> Result<()> {
        if let Some(mut process) = self.agents.remove(node) {
            process.stop()?;
        }
        self.save()
    }

    /// Kills `node`'s agent with SIGKILL (a crash, an OOM kill); the pinned
    /// programs and maps stay, as after a stop.
    pub fn kill_agent(&mut self, node: &str) -> Result<()> {
        if let Some(mut process) = self.agents.remove(node) {
            process.kill()?;
        }
        self.save()
    }

    /// Returns once every running agent has programmed what is published
    /// now. Cluster mode: each node's rule map reports its generation as
    /// programmed. Standalone mode: the lab rewrites the agents' files from
    /// the published objects and waits for each agent to reload them.
    ///
    /// A rule map's generation does not cover the shards: a change that only
    /// moves an address between identities (a pod on another node) is not
    /// waited for here; probe until the expected verdict appears.
    pub fn sync_agents(&self, timeout: Duration) -> Result<()> {
        let admin = self.kubectl();
        for node in self.agents.keys() {
            match self.agent_mode {
                AgentMode::Cluster => {
                    wait_until(
                        &format!(
                            "the agent of {node} to program its rule map and the identity shards"
                        ),
                        timeout,
                        || {
                            if let Some(dead) = self.dead_agent(node) {
                                return Ok(Some(Err(dead)));
                            }
                            let map = crate::observe::rule_map(&admin, node)?;
                            let shards = crate::observe::identity_maps(&admin)?;
                            // The rule map's generation, and every shard's:
                            // an identity change moves only the shards.
                            let programmed = map.as_ref().and_then(|m| {
                                let status = m.status.as_ref()?;
                                let rules =
                                    status.programmed_generation? == m.metadata.generation?;
                                let identities = shards.iter().all(|(name, shard)| {
                                    status.programmed_identity_maps.get(name).copied()
                                        >= shard.metadata.generation
                                });
                                (rules && identities).then_some(Ok(()))
                            });
                            Ok(programmed)
                        },
                    )??;
                }
                AgentMode::Standalone => {
                    let config = self.agent_config(node)?;
                    let (before, _) = agent::standalone_status(&config);
                    if agent::write_standalone_files(&admin, &config)? != agent::Files::Changed {
                        continue;
                    }
                    wait_until(
                        &format!("the standalone agent of {node} to reload its files"),
                        timeout,
                        || match agent::standalone_status(&config) {
                            (_, Some(error)) => Err(Error::Unexpected {
                                what: format!("the agent of {node}"),
                                problem: format!("rejected its files: {error}"),
                            }),
                            (n, None) => Ok((n > before).then_some(())),
                        },
                    )?;
                }
            }
        }
        Ok(())
    }

    /// An error with its log when `node`'s agent has exited.
    pub(super) fn dead_agent(&self, node: &str) -> Option<Error> {
        let process = self.agents.get(node)?;
        process.has_exited().then(|| Error::NotReady {
            component: agent::process_name(node),
            problem: "exited".into(),
            log: process.log_tail(30),
        })
    }

    /// `node`'s agent's `/metrics` (Prometheus text), from its node address.
    pub fn agent_metrics(&self, node: &str) -> Result<String> {
        let address = std::net::SocketAddr::new(
            std::net::IpAddr::V4(self.node(node)?.address),
            agent::AGENT_METRICS_PORT,
        );
        match crate::operator::http_get(address, "/metrics")? {
            (200, body) => Ok(body),
            (code, body) => Err(Error::Unexpected {
                what: format!("the metrics of {}", agent::process_name(node)),
                problem: format!("HTTP {code}: {body}"),
            }),
        }
    }

    pub fn agent_log(&self, node: &str) -> String {
        self.agents
            .get(node)
            .map(|p| p.log_tail(40))
            .unwrap_or_default()
    }

    /// The TCX links `node`'s agent pinned for `interface` (one per hook it
    /// attached there): a link exists once the program is attached.
    pub fn agent_links(&self, node: &str, interface: &str) -> Result<usize> {
        let root = self.bpffs.join(node);
        let mut found = 0;
        let prefix = format!("{interface}_");
        for layout in std::fs::read_dir(&root).map_err(|e| Error::Unexpected {
            what: root.display().to_string(),
            problem: e.to_string(),
        })? {
            let links = layout
                .map_err(|e| Error::Unexpected {
                    what: root.display().to_string(),
                    problem: e.to_string(),
                })?
                .path()
                .join("links");
            found += std::fs::read_dir(&links)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .count();
        }
        Ok(found)
    }

    /// The flow log of `node`'s agent (JSON lines).
    pub fn agent_flow_log(&self, node: &str) -> Result<std::path::PathBuf> {
        Ok(self.agent_config(node)?.flow_log())
    }

    fn agent_config(&self, node: &str) -> Result<AgentConfig> {
        let net = self.node(node)?.clone();
        let kubeconfig = self
            .plane()
            .record()
            .kubeconfigs
            .get(&crate::certs::Identity::agent(node).name)
            .cloned()
            .ok_or_else(|| Error::Unexpected {
                what: format!("node {node}"),
                problem: "has no agent kubeconfig".into(),
            })?;
        Ok(AgentConfig {
            binary: self.project.agent.clone(),
            mode: self.agent_mode,
            node: net,
            kubeconfig,
            bpffs: self.bpffs.clone(),
            dir: self.state().root().join("agents").join(node),
            lifetime: self.lifetime,
            collector: self.collector().map(Collector::url),
        })
    }
}

/// The failsafe ports the lab's operators add, as the chart does: the
/// agents' export to the collector, and their metrics. (Offline compiles
/// that must agree with the operator pass the same.)
pub fn failsafe_ports() -> [String; 2] {
    [
        format!("tcp/{}/egress", crate::collector::COLLECTOR_PORT),
        format!("tcp/{}/ingress", agent::AGENT_METRICS_PORT),
    ]
}
