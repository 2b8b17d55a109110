//! `kubectl bulkhead import cmdb FILE.csv|FILE.json --map column=label...`:
//! CIDRs and host names from a CMDB export become LabelMappings, with
//! provenance (see [`plan`]).
//!
//! Nothing is written unless every row is good and the API server accepts
//! every object in a dry run first: a bad row, or an object the server would
//! refuse, applies nothing.

pub mod parse;
pub mod plan;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bulkhead_api::mapping::LabelMappingSpec;
use bulkhead_api::LabelMapping;
use clap::{Args, Subcommand};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams};

use plan::{Change, ImportConfig, FILE_ANNOTATION, IMPORTED_AT, SOURCE_LABEL};

const FIELD_MANAGER: &str = "kubectl-bulkhead-cmdb";
const TIMEOUT: Duration = Duration::from_secs(30);

/// `import`'s subcommands.
#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// LabelMappings for the CIDRs and host names of a CMDB export (CSV with
    /// a header row, or a JSON array of objects).
    Cmdb(CmdbArgs),
}

/// `import cmdb`'s arguments.
#[derive(Debug, Args)]
pub struct CmdbArgs {
    /// The export: *.csv or *.json.
    pub file: PathBuf,
    /// COLUMN=LABEL: the CMDB column whose value becomes segmentation label
    /// LABEL, e.g. --map application=app --map environment=env. Repeatable.
    #[arg(long = "map", required = true, value_parser = parse_map)]
    pub map: Vec<(String, String)>,
    /// The column holding an IP address or CIDR.
    #[arg(long, default_value = "cidr")]
    pub cidr_column: String,
    /// The column holding a host name (of a Node or ExternalNode).
    #[arg(long, default_value = "hostname")]
    pub hostname_column: String,
    /// Provenance and mapping names (cmdb-<source>); default: the file's stem.
    #[arg(long)]
    pub source: Option<String>,
    /// The mappings' priority (higher wins over other mappings per key).
    #[arg(long, default_value_t = 0)]
    pub priority: i32,
    /// Print what would change; write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn parse_map(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((c, l)) if !c.trim().is_empty() && !l.trim().is_empty() => {
            Ok((c.trim().to_string(), l.trim().to_string()))
        }
        _ => Err(format!("{s:?} is not COLUMN=LABEL")),
    }
}

/// Reads and checks the file, then plans: no cluster needed.
pub fn desired(args: &CmdbArgs) -> anyhow::Result<(ImportConfig, Vec<plan::Desired>)> {
    let file = args.file.display().to_string();
    let text = std::fs::read_to_string(&args.file).with_context(|| format!("reading {file}"))?;
    let ext = args.file.extension().and_then(|e| e.to_str()).unwrap_or("");
    let rows = match ext.to_ascii_lowercase().as_str() {
        "csv" => parse::csv(&file, &text)?,
        "json" => parse::json(&file, &text)?,
        _ => bail!("{file}: expected a .csv or .json file"),
    };
    let source = match &args.source {
        Some(s) => s.clone(),
        None => args
            .file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("cmdb")
            .to_string(),
    };
    let cfg = ImportConfig {
        file,
        source,
        map: args.map.clone(),
        cidr_column: args.cidr_column.clone(),
        hostname_column: args.hostname_column.clone(),
        priority: args.priority,
    };
    let desired = plan::plan(&cfg, &rows)?;
    Ok((cfg, desired))
}

fn object(cfg: &ImportConfig, d: &plan::Desired, now: &str) -> LabelMapping {
    let mut lm = LabelMapping::new(&d.name, d.spec.clone());
    lm.metadata = ObjectMeta {
        name: Some(d.name.clone()),
        labels: Some(BTreeMap::from([(
            SOURCE_LABEL.to_string(),
            cfg.source.clone(),
        )])),
        annotations: Some(BTreeMap::from([
            (IMPORTED_AT.to_string(), now.to_string()),
            (FILE_ANNOTATION.to_string(), cfg.file.clone()),
        ])),
        ..Default::default()
    };
    lm
}

async fn timed<T, E: Into<anyhow::Error>>(
    what: String,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(TIMEOUT, f)
        .await
        .map_err(|_| anyhow!("{what}: no answer within {TIMEOUT:?}"))?
        .map_err(Into::into)
        .with_context(|| what)
}

async fn apply(cfg: &ImportConfig, changes: &[Change], dry_run: bool) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("connecting to the API server (KUBECONFIG)")?;
    let api: Api<LabelMapping> = Api::all(client);
    let now = jiff::Timestamp::now().to_string();
    let mut params = PatchParams::apply(FIELD_MANAGER).force();
    params.dry_run = dry_run;
    for c in changes {
        let d = match c {
            Change::Create(d) | Change::Update { desired: d, .. } => d,
            Change::Delete(name) => {
                let dp = DeleteParams {
                    dry_run,
                    ..Default::default()
                };
                timed(
                    format!("deleting labelmapping/{name}"),
                    api.delete(name, &dp),
                )
                .await?;
                continue;
            }
            Change::Unchanged(_) => continue,
        };
        let lm = object(cfg, d, &now);
        timed(
            format!("applying labelmapping/{}", d.name),
            api.patch(&d.name, &params, &Patch::Apply(&lm)),
        )
        .await?;
    }
    Ok(())
}

async fn existing(
    source: &str,
    names: &[String],
) -> anyhow::Result<BTreeMap<String, LabelMappingSpec>> {
    let client = kube::Client::try_default()
        .await
        .context("connecting to the API server (KUBECONFIG)")?;
    let api: Api<LabelMapping> = Api::all(client);
    let all = timed(
        "listing LabelMappings".into(),
        api.list(&ListParams::default()),
    )
    .await?;
    let mut mine = BTreeMap::new();
    for lm in all.items {
        let name = lm.metadata.name.clone().unwrap_or_default();
        let from = lm
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SOURCE_LABEL))
            .map(String::as_str);
        match from {
            Some(s) if s == source => {
                mine.insert(name, lm.spec);
            }
            _ if names.contains(&name) => bail!(
                "labelmapping/{name} exists and was not imported from CMDB source {source:?} \
                 (no {SOURCE_LABEL}={source} label): pick another --source"
            ),
            _ => {}
        }
    }
    Ok(mine)
}

/// Plans, diffs against the cluster, prints the diff; unless --dry-run, has
/// the API server dry-run every change, then applies them.
pub fn run(args: &CmdbArgs) -> anyhow::Result<String> {
    let (cfg, desired) = desired(args)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let names: Vec<String> = desired.iter().map(|d| d.name.clone()).collect();
        let before = existing(&cfg.source, &names).await?;
        let changes = plan::diff(desired, &before);
        let text = plan::render(&changes);
        if args.dry_run {
            return Ok(format!("{text}(dry run: nothing written)\n"));
        }
        apply(&cfg, &changes, true)
            .await
            .context("the API server refused the import (nothing was written)")?;
        apply(&cfg, &changes, false).await?;
        Ok(text)
    })
}
