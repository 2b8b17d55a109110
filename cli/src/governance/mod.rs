//! Governance commands: `why` (who owns the rule that denied a flow) and
//! `exception request|approve|list` (docs/operations.md walks through them).
//!
//! ```text
//!  why ─────────────► history + today's policies ─► why::explain (pure) ─► text | json
//!  exception request ─► exception::build ─► what-if (as if approved) ─► create (as yourself)
//!  exception approve ─► patch spec.approvedBy = you (the admission policy judges it)
//!  exception list ───► table of states, as the operator judges them
//!  recertify ───────► policies + status.ruleHits ─► recertify (pure) ─► table | json | csv
//! ```

pub mod exception;
pub mod recertify;
pub mod why;

pub use recertify::RecertifyArgs;

use std::time::Duration;

use anyhow::{anyhow, Context};
use bulkhead_api::SegmentationException;
use clap::{Args, Subcommand};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};

use crate::args::FlowQueryArgs;
use crate::history::{print, HistoryArgs};

const TIMEOUT: Duration = Duration::from_secs(30);

/// `why`'s arguments.
#[derive(Debug, Args)]
pub struct WhyArgs {
    #[command(flatten)]
    pub query: FlowQueryArgs,
    /// Today's policies from manifests (files or directories) instead of the API server.
    #[arg(long, value_name = "DIR")]
    pub cluster: Option<std::path::PathBuf>,
    /// JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `exception`'s subcommands.
#[derive(Debug, Subcommand)]
pub enum ExceptionCommand {
    /// Ask for a SegmentationException: prints its what-if first, then
    /// creates it in your name (unapproved).
    Request(Box<ExceptionRequestArgs>),
    /// Approve someone else's exception, in your own name.
    Approve {
        /// The exception's name.
        name: String,
    },
    /// Exceptions with their state, requester, approver and expiry.
    List(ExceptionListArgs),
}

/// `exception request`'s arguments.
#[derive(Debug, Args)]
pub struct ExceptionRequestArgs {
    /// The exception's name.
    pub name: String,
    /// ingress (traffic into --scope) or egress (traffic out of it).
    #[arg(long, default_value = "ingress")]
    pub direction: String,
    /// The endpoints it opens, as KEY=VALUE,... segmentation labels.
    #[arg(long)]
    pub scope: String,
    /// The other side: KEY=VALUE,... or a CIDR. Repeatable.
    #[arg(long, required = true)]
    pub peer: Vec<String>,
    /// PORT or PORT/PROTOCOL (TCP by default). Repeatable.
    #[arg(long, required = true)]
    pub port: Vec<String>,
    /// Why the connection is needed.
    #[arg(long)]
    pub reason: String,
    /// The request or change ticket.
    #[arg(long)]
    pub ticket: String,
    /// When it ends: a duration from now (30d, at most 90d) or an RFC 3339 time.
    #[arg(long, default_value = "30d")]
    pub expires: String,
    /// Print the exception and its what-if; create nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The requester to write with --dry-run (otherwise: who the API server says you are).
    #[arg(long)]
    pub requester: Option<String>,
    /// Skip the what-if (no history at hand).
    #[arg(long)]
    pub no_what_if: bool,
    #[command(flatten)]
    pub history: HistoryArgs,
}

/// `exception list`'s arguments.
#[derive(Debug, Args)]
pub struct ExceptionListArgs {
    /// JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn block_on<T>(work: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        tokio::time::timeout(TIMEOUT, work)
            .await
            .map_err(|_| anyhow!("no answer from the API server within {TIMEOUT:?}"))?
    })
}

async fn client() -> anyhow::Result<kube::Client> {
    kube::Client::try_default()
        .await
        .context("connecting to the API server (KUBECONFIG)")
}

/// Who the API server says the caller is.
async fn whoami(client: &kube::Client) -> anyhow::Result<String> {
    let api: Api<SelfSubjectReview> = Api::all(client.clone());
    let review = api
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .context("asking the API server who you are (SelfSubjectReview)")?;
    review
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .ok_or_else(|| anyhow!("the API server did not say who you are"))
}

/// `kubectl bulkhead why`.
pub fn why(args: &WhyArgs) -> anyhow::Result<()> {
    let (Some(from), Some(to)) = (&args.query.from, &args.query.to) else {
        anyhow::bail!("why needs --from and --to (and usually --port)");
    };
    let mut params = crate::flows::parameters(&args.query, true);
    params.remove("verdict");
    let source = crate::flows::source::Source::from_args(&args.query)?;
    let answer = source.query(&params)?;
    let history = HistoryArgs {
        since: args.query.since.clone(),
        until: args.query.until.clone(),
        flows: args.query.flows.clone(),
        collector: args.query.collector.clone(),
        service: args.query.service.clone(),
        cluster: args.cluster.clone(),
        max_records: crate::reports::args::DEFAULT_MAX_RECORDS,
    };
    let today = history.cluster()?;
    let port = args
        .query
        .port
        .map_or(String::new(), |p| format!(" port {p}"));
    let Some(explained) = why::explain(&answer.records, &today.policies) else {
        anyhow::bail!(
            "no denied (or would-be denied) flow from {from} to {to}{port} since {}: {} records matched, all allowed",
            args.query.since,
            answer.records.len()
        );
    };
    let text = if args.json {
        serde_json::to_string_pretty(&explained)? + "\n"
    } else {
        why::text(&explained)
    };
    print(&text)
}

/// `kubectl bulkhead exception ...`.
pub fn run(command: &ExceptionCommand) -> anyhow::Result<()> {
    match command {
        ExceptionCommand::Request(a) => request(a),
        ExceptionCommand::Approve { name } => block_on(async {
            let client = client().await?;
            let me = whoami(&client).await?;
            let api: Api<SegmentationException> = Api::all(client);
            let patch = serde_json::json!({"spec": {"approvedBy": me}});
            let params = PatchParams::default();
            let done = api
                .patch(name, &params, &Patch::Merge(&patch))
                .await
                .with_context(|| format!("approving SegmentationException {name} as {me}"))?;
            let expires = done.spec.expires_at;
            print(&format!(
                "segmentationexception/{name} approved by {me}; enforced until {expires}\n"
            ))
        }),
        ExceptionCommand::List(a) => {
            let items = block_on(async {
                let api: Api<SegmentationException> = Api::all(client().await?);
                Ok(api
                    .list(&ListParams::default())
                    .await
                    .context("listing SegmentationExceptions")?
                    .items)
            })?;
            print(&exception::list_text(a, &items)?)
        }
    }
}

fn request(a: &ExceptionRequestArgs) -> anyhow::Result<()> {
    let now = jiff::Timestamp::now();
    let requester = match (&a.requester, a.dry_run) {
        (Some(r), true) => r.clone(),
        (Some(_), false) => {
            anyhow::bail!("--requester is only for --dry-run: the API server records who you are")
        }
        (None, _) => block_on(async { whoami(&client().await?).await })?,
    };
    let obj = exception::build(a, &requester, now)?;
    if !a.no_what_if {
        let text = exception::what_if_text(a, &obj)?;
        exception::show(&format!(
            "what-if of exception {} (as if approved):\n{text}\n",
            a.name
        ))?;
    }
    if a.dry_run {
        return exception::show(&serde_yaml::to_string(&obj)?);
    }
    block_on(async {
        let api: Api<SegmentationException> = Api::all(client().await?);
        api.create(&PostParams::default(), &obj)
            .await
            .with_context(|| format!("requesting SegmentationException {}", a.name))?;
        Ok(())
    })?;
    print(&format!(
        "segmentationexception/{} requested by {requester}, pending approval: kubectl bulkhead exception approve {} (by someone in the approvers' group)\n",
        a.name, a.name
    ))
}
