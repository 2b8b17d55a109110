//! `bulkhead-propagation`: how long a policy change and a pod label change
//! take to reach packets, on a small lab (the baseline) and then a large one,
//! printed side by side. A benchmark: it reports, it asserts nothing.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use bulkhead_e2e::propagation::{self, Config, LabResult, ProberConfig};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "bulkhead-propagation",
    about = "Time from kubectl apply of a policy, and from a pod label change, to the first \
             packet that follows it, in the lab (needs root; one lab at a time)"
)]
struct Cli {
    /// Nodes of the measured lab.
    #[arg(long, default_value_t = 10)]
    nodes: u8,
    /// Pods per node of the measured lab.
    #[arg(long, default_value_t = 50)]
    pods: u8,
    /// Nodes of the baseline lab, measured first in the same run.
    #[arg(long, default_value_t = 3)]
    baseline_nodes: u8,
    /// Pods per node of the baseline lab.
    #[arg(long, default_value_t = 4)]
    baseline_pods: u8,
    /// Skip the baseline lab.
    #[arg(long)]
    no_baseline: bool,
    /// Trials of each kind of change (policy, label) per lab.
    #[arg(long, default_value_t = 60)]
    trials: usize,
    /// The prober's interval: one new flow every this many milliseconds.
    #[arg(long, default_value_t = 5)]
    interval_ms: u64,
    /// A request unanswered after this long counts as denied.
    #[arg(long, default_value_t = 250)]
    probe_timeout_ms: u64,
    /// How long the new verdict must hold before a trial is settled.
    #[arg(long, default_value_t = 300)]
    settle_ms: u64,
    /// A trial not settled after this long is counted as not settled.
    #[arg(long, default_value_t = 30)]
    trial_timeout_s: u64,
    /// Write every trial as JSON here.
    #[arg(long)]
    raw: Option<PathBuf>,
    /// Print only the table.
    #[arg(long)]
    quiet: bool,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    anyhow::ensure!(
        cli.nodes >= 2 && cli.baseline_nodes >= 2 && cli.pods >= 1 && cli.baseline_pods >= 1,
        "the client and the server need two nodes with a pod each"
    );
    let config = |nodes, pods_per_node| Config {
        nodes,
        pods_per_node,
        trials: cli.trials,
        prober: ProberConfig {
            interval: Duration::from_millis(cli.interval_ms),
            timeout: Duration::from_millis(cli.probe_timeout_ms),
            max_run: Duration::from_secs(4 * 3600),
        },
        settle: Duration::from_millis(cli.settle_ms),
        trial_timeout: Duration::from_secs(cli.trial_timeout_s),
        verbose: !cli.quiet,
    };
    let mut labs: Vec<LabResult> = Vec::new();
    let mut plan = Vec::new();
    if !cli.no_baseline {
        plan.push(config(cli.baseline_nodes, cli.baseline_pods));
    }
    plan.push(config(cli.nodes, cli.pods));
    for lab in &plan {
        let result = propagation::measure(lab).with_context(|| {
            format!(
                "measuring a lab of {} nodes x {} pods",
                lab.nodes, lab.pods_per_node
            )
        })?;
        labs.push(result);
    }
    if let Some(path) = &cli.raw {
        let text = serde_json::to_string_pretty(&labs)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    print!("{}", propagation::table(&labs, cli.interval_ms as f64));
    Ok(())
}
