//! `bulkhead-lab up|down|status`: the lab on this machine.

use std::path::PathBuf;

use anyhow::{Context, Result};
use bulkhead_e2e::lab::{self, Agents, LabSpec};
use bulkhead_e2e::lab::{LabPod, Probe};
use bulkhead_e2e::{Proto, StateDir};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "bulkhead-lab",
    about = "A Kubernetes cluster of network namespaces on this machine: a real kube-apiserver \
             and etcd, nodes and pods as namespaces, the Bulkhead operator and one agent per node"
)]
struct Cli {
    /// The lab's state directory [default: $BULKHEAD_LAB_DIR or /tmp/bulkhead-lab]
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum AgentChoice {
    /// Agents that read their rule maps from the API server.
    Cluster,
    /// Agents that read files the lab writes from the published rule maps.
    Standalone,
    /// No agents.
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ProtoArg {
    Tcp,
    Udp,
    Sctp,
}

impl From<ProtoArg> for Proto {
    fn from(p: ProtoArg) -> Self {
        match p {
            ProtoArg::Tcp => Proto::Tcp,
            ProtoArg::Udp => Proto::Udp,
            ProtoArg::Sctp => Proto::Sctp,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the lab and leave it running (needs root).
    Up {
        /// Number of nodes (node-1 .. node-N).
        #[arg(long, default_value_t = 3)]
        nodes: u8,
        /// Pods per node, alternating between namespaces prod and dev.
        #[arg(long, default_value_t = 4)]
        pods: u8,
        /// Whether to start node agents.
        #[arg(long, value_enum, default_value_t = AgentChoice::Cluster)]
        agents: AgentChoice,
        /// Do not start the operator.
        #[arg(long)]
        no_operator: bool,
        /// TCP, UDP and SCTP ports every pod answers on (for `probe` and `matrix`).
        #[arg(long, value_delimiter = ',', default_value = "8080,9090")]
        listen: Vec<u16>,
        /// Enforce Kubernetes NetworkPolicies too (`bulkhead-operator --network-policies`).
        #[arg(long)]
        network_policies: bool,
        /// Hosts outside the cluster (xn-1 .. xn-N): namespaces routed to the
        /// pods, joined with `kubectl bulkhead externalnode add`, each with
        /// its own agent and credential.
        #[arg(long, default_value_t = 0)]
        external_nodes: u8,
    },
    /// Stop everything `up` started, remove its namespaces, bridge and state directory.
    Down,
    /// Show what runs.
    Status,
    /// Send one request from a pod to another and say whether it was answered
    /// (exit status 0) or not (1).
    Probe {
        /// The client pod, namespace/name.
        from: String,
        /// The server pod, namespace/name.
        to: String,
        #[arg(long, default_value_t = 8080)]
        port: u16,
        #[arg(long, value_enum, default_value_t = ProtoArg::Tcp)]
        protocol: ProtoArg,
        /// To the server's IPv6 address.
        #[arg(long)]
        ipv6: bool,
    },
    /// Who reaches whom on a port, with real packets between every pair of pods.
    Matrix {
        #[arg(long, default_value_t = 8080)]
        port: u16,
        #[arg(long, value_enum, default_value_t = ProtoArg::Tcp)]
        protocol: ProtoArg,
        /// Between the pods' IPv6 addresses.
        #[arg(long)]
        ipv6: bool,
    },
    /// Print `export` lines for a shell: KUBECONFIG (admin), KUBECTL, and
    /// BULKHEAD_COLLECTOR (what `kubectl bulkhead flows` reads) when the lab runs one.
    Env,
    /// Remove what crashed labs left behind (namespaces, bridges, processes,
    /// state directories); live labs are left alone.
    Prune,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let dir = lab::dir_or_default(cli.dir.as_deref());
    let state = StateDir::at(&dir);
    match cli.command {
        Command::Up {
            nodes,
            pods,
            agents,
            no_operator,
            listen,
            network_policies,
            external_nodes,
        } => {
            let mut spec = LabSpec::new(nodes).with_default_workloads(pods);
            spec.external_nodes = external_nodes;
            spec.dir = Some(dir.clone());
            spec.verbose = true;
            spec.agents = match agents {
                AgentChoice::Cluster => Agents::Cluster,
                AgentChoice::Standalone => Agents::Standalone,
                AgentChoice::None => Agents::Off,
            };
            if no_operator {
                spec.operators.clear();
            }
            spec.listen = listen;
            spec.listen_sctp = true;
            if network_policies {
                spec.operator_args.push("--network-policies".into());
            }
            let record = lab::up(spec).with_context(|| {
                format!(
                    "bringing the lab up in {} (`bulkhead-lab down` cleans up)",
                    dir.display()
                )
            })?;
            println!("lab up in {}", dir.display());
            print_status(&state)?;
            if let Some(admin) = record.kubeconfigs.get("admin") {
                println!(
                    "\ntry:  export KUBECONFIG={}\n      {} get nodes,pods -A -o wide; {} get nrm,idm,segpol",
                    admin.display(),
                    record.kubectl.display(),
                    record.kubectl.display()
                );
            }
        }
        Command::Down => {
            if !dir.exists() {
                println!("no lab in {}", dir.display());
                return Ok(());
            }
            let down =
                lab::down(&state).with_context(|| format!("tearing down {}", dir.display()))?;
            println!(
                "stopped {}; removed {} network namespaces and {}",
                list(&down.stopped),
                down.namespaces,
                dir.display()
            );
        }
        Command::Probe {
            from,
            to,
            port,
            protocol,
            ipv6,
        } => {
            let pods = recorded_pods(&state)?;
            let probe = Probe {
                from: from.clone(),
                to: to.clone(),
                proto: protocol.into(),
                port,
                v6: ipv6,
            };
            let result = lab::probe_between(&pods, &probe)?;
            let verdict = if result.answered {
                "answered"
            } else {
                "NO ANSWER"
            };
            println!(
                "{from} -> {to} {protocol:?}/{port}: {verdict} ({})",
                result.detail
            );
            if !result.answered {
                std::process::exit(1);
            }
        }
        Command::Matrix {
            port,
            protocol,
            ipv6,
        } => {
            let pods = recorded_pods(&state)?;
            print!("{}", lab::matrix(&pods, protocol.into(), port, ipv6)?);
        }
        Command::Env => {
            let record = state
                .read_record()
                .with_context(|| format!("no lab in {}", dir.display()))?;
            if let Some(admin) = record.kubeconfigs.get("admin") {
                println!("export KUBECONFIG={}", admin.display());
            }
            println!("export KUBECTL={}", record.kubectl.display());
            if let Some(topology) = record.parts.as_ref().and_then(|p| p.topology.as_ref()) {
                if state.root().join("collector").exists() {
                    println!(
                        "export BULKHEAD_COLLECTOR=http://{}:{}",
                        topology.gateway,
                        bulkhead_e2e::collector::COLLECTOR_PORT
                    );
                }
            }
        }
        Command::Prune => {
            let pruned = lab::prune().context("pruning crashed labs")?;
            if pruned.labs.is_empty() {
                println!("no crashed labs");
            }
            for id in &pruned.labs {
                println!("removed the network of lab {id}");
            }
            for dir in &pruned.dirs {
                println!("took down {}", dir.display());
            }
        }
        Command::Status => {
            if !print_status(&state)? {
                anyhow::bail!("some lab processes or namespaces are gone");
            }
        }
    }
    Ok(())
}

/// Prints the lab; false when something recorded is no longer there.
fn print_status(state: &StateDir) -> Result<bool> {
    let status = lab::status(state)?;
    let dir = state.root().display();
    match &status.record {
        Some(record) => {
            println!("lab in {dir}");
            println!("  API server  {}", record.server);
            println!("  etcd        {}", record.etcd);
            for (name, path) in &record.kubeconfigs {
                println!("  kubeconfig  {name:<16} {}", path.display());
            }
            if let Some(parts) = &record.parts {
                if let Some(topology) = &parts.topology {
                    println!(
                        "  network     lab id {}, bridge {} {}/24",
                        topology.lab, topology.bridge, topology.gateway
                    );
                    for node in &topology.nodes {
                        println!(
                            "  node        {:<8} {:<15} netns {:<16} pods {}",
                            node.name, node.address, node.netns, node.pod_cidr
                        );
                    }
                    for host in &topology.external_hosts {
                        println!(
                            "  external    {:<8} {:<15} netns {:<16} eth1 {} (segment {})",
                            host.name,
                            host.address,
                            host.netns,
                            host.segment_address,
                            host.segment_peer
                        );
                    }
                }
                for pod in &parts.pods {
                    println!(
                        "  pod         {:<20} {:<8} {:<15} netns {}",
                        pod.key(),
                        pod.node,
                        pod.address,
                        pod.netns
                    );
                }
                for (name, addr) in &parts.operators {
                    println!("  operator    {name:<16} metrics http://{addr}/metrics");
                }
                if !parts.listen.is_empty() {
                    let ports: Vec<String> = parts.listen.iter().map(u16::to_string).collect();
                    println!(
                        "  listeners   every pod answers on TCP and UDP {}",
                        ports.join(", ")
                    );
                }
                if let Some(mode) = &parts.agent_mode {
                    println!("  agents      {mode} mode");
                }
            }
        }
        None if status.processes.is_empty() => {
            println!("no lab in {dir}");
            return Ok(true);
        }
        None => println!("lab in {dir} (incomplete: no lab.json)"),
    }
    for p in &status.processes {
        let state = if p.running { "running" } else { "NOT RUNNING" };
        println!("  process     {:<20} pid {:<8} {state}", p.name, p.pid);
    }
    for ns in &status.missing_namespaces {
        println!("  MISSING     netns {ns}");
    }
    Ok(status.processes.iter().all(|p| p.running) && status.missing_namespaces.is_empty())
}

fn recorded_pods(state: &StateDir) -> Result<Vec<LabPod>> {
    let record = state
        .read_record()
        .with_context(|| format!("no lab in {}", state.root().display()))?;
    let parts = record.parts.unwrap_or_default();
    if parts.listen.is_empty() {
        anyhow::bail!(
            "the pods of this lab answer on no port (`bulkhead-lab up --listen 8080,...`)"
        );
    }
    Ok(parts.pods)
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "nothing".to_owned()
    } else {
        names.join(", ")
    }
}
