//! `kubectl bulkhead what-if DRAFT...`: observed traffic whose verdict a
//! draft would change.
//!
//! ```text
//!  DRAFT files ─► load/ ─► SegmentationPolicies, NetworkPolicies ─┐   --delete NAME
//!  today's cluster (--cluster DIR | API server) ──────────────────┼─► bulkhead_insight::whatif
//!  history in [--since, --until) (--flows FILE | collector) ──────┘          │
//!                                         json (the contract) | markdown (a PR comment) | table
//! ```
//!
//! Exit status: 0 when nothing observed would be newly denied, 3 when
//! something would, 1 on errors.

pub(crate) mod render;

use std::path::PathBuf;
use std::process::ExitCode;

use bulkhead_insight::whatif::{what_if, Draft, WhatIfOptions};
use bulkhead_policy::CompileOptions;
use clap::{Args, ValueEnum};

use crate::args::ModeArg;
use crate::history::{print, HistoryArgs};
use crate::load::Kind;

/// The exit status when observed traffic would be newly denied.
pub const NEWLY_DENIED: u8 = 3;

/// `what-if`'s arguments.
#[derive(Debug, Args)]
pub struct WhatIfArgs {
    /// Draft manifests (files or directories): SegmentationPolicies and
    /// NetworkPolicies that replace same-named objects or add new ones.
    #[arg(value_name = "DRAFT")]
    pub drafts: Vec<PathBuf>,
    /// Remove this policy (a SegmentationPolicy name, or a NetworkPolicy's
    /// namespace/name). Repeatable; works with or without DRAFT files.
    #[arg(long, value_name = "NAME")]
    pub delete: Vec<String>,
    /// Judge the draft's SegmentationPolicies as if they set full mode: the
    /// question to ask before a promotion.
    #[arg(long)]
    pub as_enforced: bool,
    #[command(flatten)]
    pub history: HistoryArgs,
    /// The mode of endpoints that no policy gives one (the operator's setting).
    #[arg(long, value_enum, default_value_t = ModeArg::Visibility, value_name = "MODE")]
    pub default_mode: ModeArg,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = WhatIfFormat::Table)]
    pub output: WhatIfFormat,
}

/// `what-if -o`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WhatIfFormat {
    /// For people.
    Table,
    /// `{"records": N, "newlyDenied": [...], "newlyAllowed": [...]}`.
    Json,
    /// A pull-request comment.
    Markdown,
}

pub fn run(args: &WhatIfArgs) -> anyhow::Result<ExitCode> {
    if args.drafts.is_empty() && args.delete.is_empty() {
        anyhow::bail!("nothing to compare: give DRAFT files, --delete NAME, or both");
    }
    let window = args.history.window(jiff::Timestamp::now())?;
    let draft = load_draft(&args.drafts, &args.delete)?;
    let today = args.history.cluster()?;
    let records = args.history.records(window)?;
    let options = WhatIfOptions {
        since: window.since,
        until: window.until,
        as_enforced: args.as_enforced,
        compile: CompileOptions {
            default_mode: args.default_mode.into(),
            ..CompileOptions::default()
        },
    };
    let report = what_if(&today, &draft, &records, &options)?;
    let context = render::Context {
        drafts: &args.drafts,
        delete: &args.delete,
        as_enforced: args.as_enforced,
        since: window.since,
        until: window.until,
    };
    let text = match args.output {
        WhatIfFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
        WhatIfFormat::Markdown => render::markdown(&report, &context),
        WhatIfFormat::Table => render::table(&report, &context),
    };
    print(&text)?;
    Ok(if report.newly_denied.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(NEWLY_DENIED)
    })
}

fn load_draft(paths: &[PathBuf], delete: &[String]) -> anyhow::Result<Draft> {
    let mut draft = Draft {
        delete: delete.to_vec(),
        ..Draft::default()
    };
    if paths.is_empty() {
        return Ok(draft);
    }
    let inventory = crate::load::load(paths)?;
    for w in &inventory.warnings {
        eprintln!("warning: {w}");
    }
    let ignored = inventory
        .origins
        .keys()
        .filter(|(k, _)| !matches!(k, Kind::SegmentationPolicy | Kind::NetworkPolicy))
        .count();
    if ignored > 0 {
        eprintln!(
            "warning: the draft has {ignored} objects that are not SegmentationPolicies or NetworkPolicies; what-if ignores them"
        );
    }
    draft.policies = inventory.snapshot.policies;
    draft.network_policies = inventory.snapshot.network_policies;
    Ok(draft)
}
