//! `kubectl bulkhead recertify --unused-for 90d`: the rules to look at again
//! (never hit, not hit within the window, expired, review overdue), from
//! the SegmentationPolicies' specs and their `status.ruleHits`.
//!
//! ```text
//!  API server: SegmentationPolicies (spec + status.ruleHits)
//!      └─► bulkhead_policy::recertify::recertify (pure) ─► table | json | csv
//! ```

use std::fmt::Write;

use anyhow::{anyhow, Context};
use bulkhead_api::SegmentationPolicy;
use bulkhead_policy::recertify::{recertify, Finding, PolicyUse};
use clap::{Args, ValueEnum};
use kube::api::{Api, ListParams};
use kube::ResourceExt;

use crate::history::print;

/// `recertify`'s arguments.
#[derive(Debug, Args)]
pub struct RecertifyArgs {
    /// Rules not hit for this long are listed as unused (90d, 12w, 36h).
    #[arg(long, default_value = "90d")]
    pub unused_for: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = RecertifyFormat::Table)]
    pub output: RecertifyFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RecertifyFormat {
    Table,
    Json,
    Csv,
}

/// `kubectl bulkhead recertify`.
pub fn run(args: &RecertifyArgs) -> anyhow::Result<()> {
    let window = bulkhead_insight::query::params::duration(&args.unused_for)
        .filter(|d| d.is_positive())
        .ok_or_else(|| {
            anyhow!(
                "--unused-for {:?}: not a duration like 90d, 12w or 36h",
                args.unused_for
            )
        })?;
    let policies = super::block_on(async {
        let api: Api<SegmentationPolicy> = Api::all(super::client().await?);
        Ok(api
            .list(&ListParams::default())
            .await
            .context("listing SegmentationPolicies")?
            .items)
    })?;
    let names: Vec<String> = policies.iter().map(|p| p.name_any()).collect();
    let uses = policies.iter().zip(&names).map(|(p, name)| PolicyUse {
        name,
        spec: &p.spec,
        hits: p.status.as_ref().map_or(&[][..], |s| &s.rule_hits),
    });
    let findings = recertify(uses, jiff::Timestamp::now(), window);
    print(&render(&findings, args.output, &args.unused_for)?)
}

/// The findings in `format`; `window` as the user wrote it, for the table's note.
pub fn render(
    findings: &[Finding],
    format: RecertifyFormat,
    window: &str,
) -> anyhow::Result<String> {
    Ok(match format {
        RecertifyFormat::Json => serde_json::to_string_pretty(findings)? + "\n",
        RecertifyFormat::Csv => csv(findings),
        RecertifyFormat::Table => table(findings, window),
    })
}

fn reasons(f: &Finding) -> String {
    let r: Vec<&str> = f.reasons.iter().map(|r| r.as_str()).collect();
    r.join(",")
}

fn last_hit(f: &Finding) -> String {
    f.last_hit.map_or("never".into(), |t| t.to_string())
}

fn or_dash(s: &Option<String>) -> String {
    s.clone().unwrap_or_else(|| "-".into())
}

fn table(findings: &[Finding], window: &str) -> String {
    if findings.is_empty() {
        return format!("every rule was hit within {window}, none expired, none overdue\n");
    }
    let mut t = crate::render::Table::new(&[
        "POLICY",
        "RULE",
        "REASONS",
        "HITS",
        "LAST HIT",
        "OWNER",
        "CONTACT",
        "REVIEW BY",
    ]);
    for f in findings {
        t.row(vec![
            f.policy.clone(),
            f.rule.clone(),
            reasons(f),
            f.hits.to_string(),
            last_hit(f),
            or_dash(&f.owner),
            or_dash(&f.contact),
            or_dash(&f.review_by),
        ]);
    }
    t.render()
}

/// Quotes a field when it holds a comma, a quote or a line break.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv(findings: &[Finding]) -> String {
    let mut out = String::from(
        "policy,rule,path,reasons,hits,last_hit,owner,contact,ticket,review_by,expires\n",
    );
    for f in findings {
        let cells = [
            f.policy.clone(),
            f.rule.clone(),
            f.path.clone(),
            reasons(f),
            f.hits.to_string(),
            f.last_hit.map(|t| t.to_string()).unwrap_or_default(),
            f.owner.clone().unwrap_or_default(),
            f.contact.clone().unwrap_or_default(),
            f.ticket.clone().unwrap_or_default(),
            f.review_by.clone().unwrap_or_default(),
            f.expires.clone().unwrap_or_default(),
        ];
        let row: Vec<String> = cells.iter().map(|c| field(c)).collect();
        let _ = writeln!(out, "{}", row.join(","));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_policy::recertify::Reason;

    fn findings() -> Vec<Finding> {
        vec![
            Finding {
                policy: "db".into(),
                rule: "from-batch".into(),
                path: "ingress[1]".into(),
                owner: Some("payments".into()),
                contact: Some("pay, oncall".into()),
                ticket: None,
                review_by: Some("2026-06-30".into()),
                expires: None,
                hits: 2,
                last_hit: Some("2025-12-01T00:00:00Z".parse().expect("time")),
                reasons: vec![Reason::Unused],
            },
            Finding {
                policy: "db".into(),
                rule: "egress[0]".into(),
                path: "egress[0]".into(),
                owner: None,
                contact: None,
                ticket: None,
                review_by: None,
                expires: Some("2026-04-01T12:00:00Z".into()),
                hits: 0,
                last_hit: None,
                reasons: vec![Reason::NeverHit, Reason::Expired],
            },
        ]
    }

    #[test]
    fn table_json_and_csv_carry_the_same_findings() {
        let f = findings();
        let table = render(&f, RecertifyFormat::Table, "90d").expect("table");
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(
            lines[0].starts_with("POLICY  RULE        REASONS"),
            "{table}"
        );
        assert!(
            lines[2].contains("never-hit,expired") && lines[2].contains("never"),
            "{table}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render(&f, RecertifyFormat::Json, "90d").expect("json"))
                .expect("JSON");
        assert_eq!(json[0]["reasons"], serde_json::json!(["unused"]));
        assert_eq!(
            json[1]["reasons"],
            serde_json::json!(["never-hit", "expired"])
        );
        assert_eq!(json[0]["lastHit"], "2025-12-01T00:00:00Z");
        assert_eq!(json[1]["lastHit"], serde_json::Value::Null);
        let csv = render(&f, RecertifyFormat::Csv, "90d").expect("csv");
        let rows: Vec<&str> = csv.lines().collect();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[1],
            "db,from-batch,ingress[1],unused,2,2025-12-01T00:00:00Z,payments,\"pay, oncall\",,2026-06-30,"
        );
        assert_eq!(
            rows[2],
            "db,egress[0],egress[0],\"never-hit,expired\",0,,,,,,2026-04-01T12:00:00Z"
        );
        let none = render(&[], RecertifyFormat::Table, "30d").expect("empty");
        assert!(none.contains("within 30d"), "{none}");
    }
}
