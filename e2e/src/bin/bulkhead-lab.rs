//! `bulkhead-lab up|down|status`: the lab on this machine.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use bulkhead_e2e::lab::{self, LabConfig};
use bulkhead_e2e::StateDir;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "bulkhead-lab",
    about = "A real kube-apiserver and etcd (and soon nodes, operator and agents) on this machine"
)]
struct Cli {
    /// The lab's state directory [default: $BULKHEAD_LAB_DIR or /tmp/bulkhead-lab]
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the lab and leave it running.
    Up {
        /// Number of nodes (node-1 .. node-N); each node's agent gets a kubeconfig.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// The address the API server listens on [default: 127.0.0.1].
        #[arg(long)]
        bind_address: Option<IpAddr>,
    },
    /// Stop everything `up` started and remove the state directory.
    Down,
    /// Show what runs.
    Status,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let dir = cli.dir.unwrap_or_else(StateDir::default_root);
    let state = StateDir::at(&dir);
    match cli.command {
        Command::Up {
            nodes,
            bind_address,
        } => {
            let config = LabConfig {
                dir: dir.clone(),
                nodes: (1..=nodes).map(|i| format!("node-{i}")).collect(),
                bind_address,
            };
            let record = lab::up(&config).with_context(|| {
                format!(
                    "bringing the lab up in {} (`bulkhead-lab down` cleans up)",
                    dir.display()
                )
            })?;
            println!("lab up in {}", dir.display());
            println!("  API server  {}", record.server);
            for (name, path) in &record.kubeconfigs {
                println!("  kubeconfig  {name:<12} {}", path.display());
            }
            if let Some(admin) = record.kubeconfigs.get("admin") {
                println!(
                    "try: {} --kubeconfig {} get segpol",
                    record.kubectl.display(),
                    admin.display()
                );
            }
        }
        Command::Down => {
            if !dir.exists() {
                println!("no lab in {}", dir.display());
                return Ok(());
            }
            let stopped =
                lab::down(&state).with_context(|| format!("tearing down {}", dir.display()))?;
            println!("stopped {}; removed {}", list(&stopped), dir.display());
        }
        Command::Status => {
            let status = lab::status(&state)?;
            match &status.record {
                Some(record) => {
                    println!("lab in {}", dir.display());
                    println!("  API server  {}", record.server);
                    println!("  etcd        {}", record.etcd);
                }
                None if status.processes.is_empty() => {
                    println!("no lab in {}", dir.display());
                    return Ok(());
                }
                None => println!("lab in {} (incomplete: no lab.json)", dir.display()),
            }
            for p in &status.processes {
                let state = if p.running { "running" } else { "NOT RUNNING" };
                println!("  {:<16} pid {:<8} {state}", p.name, p.pid);
            }
            if status.processes.iter().any(|p| !p.running) {
                anyhow::bail!("some lab processes are not running");
            }
        }
    }
    Ok(())
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "nothing".to_owned()
    } else {
        names.join(", ")
    }
}
