//! `kubectl bulkhead exception request|approve|list`: the SegmentationException
//! as a person asks for it, its what-if before it is sent, and the approval
//! in the approver's own name (the API server's admission policy checks both).

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context};
use bulkhead_api::exception::ExceptionState;
use bulkhead_api::policy::{Peer, PortSpec, Scope};
use bulkhead_api::rule_map::Direction;
use bulkhead_api::{LabelSelector, SegmentationException, SegmentationExceptionSpec};
use bulkhead_insight::whatif::{what_if, Draft, WhatIfOptions};
use bulkhead_policy::exception::{assess, policy_name, DEFAULT_MAX_DURATION};
use bulkhead_policy::CompileOptions;
use jiff::Timestamp;

use super::{ExceptionListArgs, ExceptionRequestArgs};
use crate::history::print;

/// `app=db,env=prod` as a selector.
pub fn parse_selector(flag: &str, text: &str) -> anyhow::Result<LabelSelector> {
    let mut labels = BTreeMap::new();
    for pair in text.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| anyhow!("--{flag} {text}: {pair:?} is not KEY=VALUE"))?;
        labels.insert(k.trim().to_string(), v.trim().to_string());
    }
    if labels.is_empty() {
        bail!("--{flag} {text}: give at least one KEY=VALUE");
    }
    Ok(LabelSelector::from_labels(labels))
}

fn parse_peer(text: &str) -> anyhow::Result<Peer> {
    if text.contains('/') && !text.contains('=') {
        return Ok(Peer {
            cidr: Some(text.to_string()),
            ..Peer::default()
        });
    }
    Ok(Peer {
        selector: Some(parse_selector("peer", text)?),
        ..Peer::default()
    })
}

fn parse_port(text: &str) -> anyhow::Result<PortSpec> {
    let (port, protocol) = text.split_once('/').unwrap_or((text, "TCP"));
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| anyhow!("--port {text}: {port:?} is not a port from 1 to 65535"))?;
    let protocol = serde_json::from_value(protocol.to_uppercase().into())
        .map_err(|_| anyhow!("--port {text}: {protocol:?} is not TCP, UDP or SCTP"))?;
    Ok(PortSpec {
        protocol,
        port: Some(port),
        end_port: None,
        icmp_type: None,
    })
}

/// `30d`, `12h` from `now`, or an RFC 3339 time.
fn parse_expiry(text: &str, now: Timestamp) -> anyhow::Result<Timestamp> {
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t);
    }
    let span = bulkhead_insight::query::params::duration(text).ok_or_else(|| {
        anyhow!("--expires {text}: not a duration (30d, 12h) or an RFC 3339 time")
    })?;
    now.checked_add(span)
        .map_err(|e| anyhow!("--expires {text}: {e}"))
}

/// The exception a request describes (unapproved).
pub fn build(
    a: &ExceptionRequestArgs,
    requester: &str,
    now: Timestamp,
) -> anyhow::Result<SegmentationException> {
    let expires = parse_expiry(&a.expires, now)?;
    let spec = SegmentationExceptionSpec {
        scope: Scope {
            selector: Some(parse_selector("scope", &a.scope)?),
            cluster_wide: false,
        },
        direction: match a.direction.as_str() {
            "ingress" => Direction::Ingress,
            "egress" => Direction::Egress,
            other => bail!("--direction {other}: ingress or egress"),
        },
        peers: a
            .peer
            .iter()
            .map(|p| parse_peer(p))
            .collect::<anyhow::Result<_>>()?,
        ports: a
            .port
            .iter()
            .map(|p| parse_port(p))
            .collect::<anyhow::Result<_>>()?,
        requester: requester.to_string(),
        reason: a.reason.clone(),
        ticket: a.ticket.clone(),
        expires_at: expires.round(jiff::Unit::Second)?.to_string(),
        approved_by: None,
    };
    let violations = crate::validate::segmentation_exception(&spec);
    if let Some(v) = violations.first() {
        bail!("{v}");
    }
    let max = DEFAULT_MAX_DURATION;
    let judged = assess(&a.name, &spec, now, now, max);
    if judged.state == ExceptionState::Refused {
        bail!("{}", judged.message);
    }
    Ok(SegmentationException::new(&a.name, spec))
}

/// The what-if of the exception as if approved: what history shows it would newly allow.
pub fn what_if_text(
    a: &ExceptionRequestArgs,
    exception: &SegmentationException,
) -> anyhow::Result<String> {
    let now = Timestamp::now();
    let window = a.history.window(now)?;
    let mut approved = exception.spec.clone();
    approved.approved_by = Some("(approver)".into());
    let judged = assess(&a.name, &approved, now, now, DEFAULT_MAX_DURATION);
    let policy = judged
        .policy
        .ok_or_else(|| anyhow!("the exception does not compile: {}", judged.message))?;
    let draft = Draft {
        policies: BTreeMap::from([(policy_name(&a.name), policy)]),
        ..Draft::default()
    };
    let today = a.history.cluster()?;
    let records = a.history.records(window)?;
    let options = WhatIfOptions {
        since: window.since,
        until: window.until,
        as_enforced: false,
        compile: CompileOptions::default(),
    };
    let report = what_if(&today, &draft, &records, &options)?;
    let drafts = [std::path::PathBuf::from(format!("exception {}", a.name))];
    let context = crate::whatif_cmd::render::Context {
        drafts: &drafts,
        delete: &[],
        as_enforced: false,
        since: window.since,
        until: window.until,
    };
    Ok(crate::whatif_cmd::render::table(&report, &context))
}

/// The exceptions as a table (state at `now`, as the operator judges it).
pub fn table(items: &[SegmentationException], now: Timestamp) -> String {
    let mut rows = vec![[
        "NAME".to_string(),
        "STATE".into(),
        "REQUESTER".into(),
        "APPROVED BY".into(),
        "EXPIRES".into(),
        "TICKET".into(),
        "REASON".into(),
    ]];
    for e in items {
        let name = kube::ResourceExt::name_any(e);
        let created = e.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
        let state =
            e.status.as_ref().and_then(|s| s.state).unwrap_or_else(|| {
                assess(&name, &e.spec, created, now, DEFAULT_MAX_DURATION).state
            });
        rows.push([
            name,
            state.as_str().into(),
            e.spec.requester.clone(),
            e.spec.approved_by.clone().unwrap_or_else(|| "-".into()),
            e.spec.expires_at.clone(),
            e.spec.ticket.clone(),
            e.spec.reason.clone(),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `exception list`'s output.
pub fn list_text(a: &ExceptionListArgs, items: &[SegmentationException]) -> anyhow::Result<String> {
    Ok(if a.json {
        serde_json::to_string_pretty(items).context("serializing")? + "\n"
    } else {
        table(items, Timestamp::now())
    })
}

pub(super) fn show(text: &str) -> anyhow::Result<()> {
    print(text)
}
