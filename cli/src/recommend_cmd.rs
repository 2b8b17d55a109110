//! `kubectl bulkhead recommend`: SegmentationPolicy YAML from observed traffic.
//!
//! ```text
//!  history (HistoryArgs) ─► bulkhead_insight::recommend ─► policies + evidence annotations
//!                                                         ─► unlabeled peers, warnings (stderr)
//! ```

use std::fmt::Write;

use bulkhead_insight::recommend::{recommend, Layer, RecommendOptions, Recommendation};
use bulkhead_insight::EndpointMatch;
use clap::{Args, ValueEnum};
use serde_json::json;

use crate::args::ModeArg;
use crate::history::{print, HistoryArgs};

/// `recommend`'s arguments.
#[derive(Debug, Args)]
pub struct RecommendArgs {
    /// The endpoints to write policies for: a segmentation label selector
    /// (`env=prod`, `app=shop,env=prod`) [default: every labeled endpoint].
    #[arg(long, value_name = "SELECTOR")]
    pub scope: Option<String>,
    /// `env` ring-fences environments, `app` gives per-application allow
    /// lists, `role` adds roles and exact ports.
    #[arg(long, value_enum, default_value_t = LayerArg::Role)]
    pub layer: LayerArg,
    #[command(flatten)]
    pub history: HistoryArgs,
    /// World addresses are aggregated into IPv4 prefixes no longer than this.
    #[arg(long, default_value_t = 24, value_name = "BITS")]
    pub max_prefix_len: u8,
    /// The same for IPv6.
    #[arg(long, default_value_t = 64, value_name = "BITS")]
    pub max_prefix_len_v6: u8,
    /// Warn when the window is shorter than this (monthly and quarterly
    /// jobs need long windows).
    #[arg(long, default_value = "35d", value_name = "DURATION")]
    pub min_window: String,
    /// Destination ports from this one up are ephemeral: one range.
    #[arg(long, default_value_t = 32768, value_name = "PORT")]
    pub ephemeral_from: u16,
    /// The mode the policies set.
    #[arg(long, value_enum, default_value_t = ModeArg::Visibility, value_name = "MODE")]
    pub enforcement: ModeArg,
    /// Policy names start with this.
    #[arg(long, default_value = "recommended")]
    pub name_prefix: String,
    /// Allow egress that went through a named Service by naming the Service
    /// (a `service` peer that follows its EndpointSlices) instead of the
    /// labels of the backends that answered. Direct traffic keeps label peers.
    #[arg(long)]
    pub service_peers: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = RecommendFormat::Yaml)]
    pub output: RecommendFormat,
}

/// `--layer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LayerArg {
    Env,
    App,
    Role,
}

/// `recommend -o`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RecommendFormat {
    /// SegmentationPolicy manifests, ready for `kubectl apply -f`.
    Yaml,
    /// The policies with their evidence, the unlabeled peers and warnings.
    Json,
}

pub fn run(args: &RecommendArgs) -> anyhow::Result<()> {
    let now = jiff::Timestamp::now();
    let window = args.history.window(now)?;
    let layer = match args.layer {
        LayerArg::Env => Layer::Env,
        LayerArg::App => Layer::App,
        LayerArg::Role => Layer::Role,
    };
    let min_window =
        bulkhead_insight::query::params::duration(&args.min_window).ok_or_else(|| {
            anyhow::anyhow!(
                "--min-window {:?}: expected a duration such as 35d",
                args.min_window
            )
        })?;
    let mut options = RecommendOptions::new(layer, window.since, window.until);
    options.scope = args
        .scope
        .as_deref()
        .map(EndpointMatch::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--scope: {e}"))?;
    options.max_prefix_v4 = args.max_prefix_len;
    options.max_prefix_v6 = args.max_prefix_len_v6;
    options.min_window = min_window;
    options.ephemeral_from = args.ephemeral_from;
    options.enforcement = args.enforcement.into();
    options.name_prefix = args.name_prefix.clone();
    options.service_peers = args.service_peers;
    let records = args.history.records(window)?;
    let rec = recommend(&records, &options)?;
    for w in &rec.warnings {
        eprintln!("warning: {w}");
    }
    if args.history.cluster.is_some() {
        let today = args.history.cluster()?;
        for p in rec
            .policies
            .iter()
            .filter(|p| today.policies.contains_key(&p.name))
        {
            eprintln!(
                "warning: {} already exists in the cluster; applying replaces it",
                p.name
            );
        }
    }
    for u in &rec.unlabeled {
        eprintln!(
            "unlabeled: {} {} ({}) talked with {} ({} flows): label it, then recommend again",
            kind(u.kind),
            u.name.as_deref().unwrap_or("?"),
            u.address,
            selector(&u.with),
            u.flows
        );
    }
    let text = match args.output {
        RecommendFormat::Json => {
            let mut v = serde_json::to_value(&rec)?;
            v["policies"] = serde_json::Value::Array(manifests(&rec));
            serde_json::to_string_pretty(&v)? + "\n"
        }
        RecommendFormat::Yaml => yaml(&rec, &window_text(window.since, window.until))?,
    };
    print(&text)
}

fn window_text(since: jiff::Timestamp, until: jiff::Timestamp) -> String {
    format!("{since} to {until}")
}

fn kind(k: bulkhead_api::flow::EndpointKind) -> &'static str {
    use bulkhead_api::flow::EndpointKind::*;
    match k {
        Pod => "pod",
        Node => "node",
        ExternalNode => "externalnode",
        Cidr => "cidr",
        World => "world",
    }
}

fn selector(l: &bulkhead_api::Labels) -> String {
    l.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The policies as objects, each rule's evidence in an annotation
/// `evidence.bulkhead.dev/<rule>`.
fn manifests(rec: &Recommendation) -> Vec<serde_json::Value> {
    rec.policies
        .iter()
        .map(|p| {
            let annotations: serde_json::Map<String, serde_json::Value> = p
                .evidence
                .iter()
                .map(|(rule, e)| {
                    (
                        format!("evidence.bulkhead.dev/{rule}"),
                        json!(e.annotation()),
                    )
                })
                .collect();
            json!({
                "apiVersion": "bulkhead.dev/v1alpha1",
                "kind": "SegmentationPolicy",
                "metadata": {
                    "name": p.name,
                    "labels": {"bulkhead.dev/recommended": rec.layer.as_str()},
                    "annotations": annotations,
                },
                "spec": p.spec,
            })
        })
        .collect()
}

fn yaml(rec: &Recommendation, window: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    writeln!(
        out,
        "# kubectl bulkhead recommend --layer {}: {} policies from {} records, {window}",
        rec.layer.as_str(),
        rec.policies.len(),
        rec.records
    )?;
    for w in &rec.warnings {
        writeln!(out, "# warning: {w}")?;
    }
    if !rec.unlabeled.is_empty() {
        writeln!(
            out,
            "# unlabeled peers (not allowed; label them and recommend again):"
        )?;
        for u in &rec.unlabeled {
            writeln!(
                out,
                "#   {} {} {} with {} ({} flows, last seen {})",
                kind(u.kind),
                u.name.as_deref().unwrap_or("-"),
                u.address,
                selector(&u.with),
                u.flows,
                u.last_seen
            )?;
        }
    }
    for m in manifests(rec) {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&m)?);
    }
    Ok(out)
}
