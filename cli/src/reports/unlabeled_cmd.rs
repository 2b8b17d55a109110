//! `kubectl bulkhead unlabeled`: the labeling queue, or with `--suggest`
//! LabelMapping YAML to edit and apply.

use bulkhead_api::mapping::{EndpointMatch, LabelMapping, LabelMappingSpec, MappingRule};
use bulkhead_insight::unlabeled::{queue, suggest, unlabeled_endpoints, Entry, Suggestion};

use super::args::{ListFormat, UnlabeledArgs};
use crate::render::Table;

pub fn run(a: &UnlabeledArgs) -> anyhow::Result<()> {
    // Manifests, else the API server; `--no-cluster` (or no reachable API
    // server with `--flows`) queues from the history alone.
    let compiled = if a.no_cluster {
        None
    } else {
        Some(super::cluster(&a.paths, &a.cluster)?)
    };
    let endpoints = compiled.as_ref().map(|c| unlabeled_endpoints(&c.output));
    let (records, window) = super::history(&a.history, "1h")?;
    let entries = queue(&records, endpoints.as_deref());
    let text = if a.suggest {
        let s = suggest(&entries);
        match a.output {
            ListFormat::Json => serde_json::to_string_pretty(&s)? + "\n",
            ListFormat::Table => mapping_yaml(&s, &window)?,
        }
    } else {
        match a.output {
            ListFormat::Json => {
                serde_json::to_string_pretty(&serde_json::json!({
                    "since": window.since,
                    "until": window.until,
                    "entries": entries,
                }))? + "\n"
            }
            ListFormat::Table => table(&entries),
        }
    };
    super::emit(&text, None)
}

fn table(entries: &[Entry]) -> String {
    if entries.is_empty() {
        return "nothing unlabeled\n".into();
    }
    let mut t = Table::new(&[
        "NAME",
        "KIND",
        "FLOWS",
        "BYTES",
        "FIRST SEEN",
        "LAST SEEN",
        "PEERS",
        "PORTS",
    ]);
    for e in entries {
        let kind = serde_json::to_value(e.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let name = match &e.hostname {
            Some(h) => format!("{} ({h})", e.name),
            None => e.name.clone(),
        };
        let few = |v: &[String]| {
            let mut s = v.iter().take(3).cloned().collect::<Vec<_>>().join(",");
            if v.len() > 3 {
                s.push_str(&format!(",+{}", v.len() - 3));
            }
            s
        };
        let time = |t: Option<jiff::Timestamp>| t.map_or("-".to_string(), |t| t.to_string());
        t.row(vec![
            name,
            kind,
            e.flows.to_string(),
            e.bytes.to_string(),
            time(e.first_seen),
            time(e.last_seen),
            few(&e.peers),
            few(&e.ports),
        ]);
    }
    t.render()
}

/// One LabelMapping whose rules are the suggestions, with a header that says
/// where it came from and what to edit.
fn mapping_yaml(
    s: &[Suggestion],
    window: &bulkhead_insight::report::Window,
) -> anyhow::Result<String> {
    if s.is_empty() {
        return Ok(
            "# nothing to suggest: no unknown addresses or unlabeled hosts in the window\n".into(),
        );
    }
    // A LabelMapping holds at most 128 rules; the queue is ordered by traffic.
    let rules = s
        .iter()
        .take(128)
        .map(|s| MappingRule {
            name: Some(s.name.clone()),
            match_: EndpointMatch {
                cidrs: (!s.cidrs.is_empty())
                    .then(|| s.cidrs.iter().map(ToString::to_string).collect()),
                hostnames: (!s.hostnames.is_empty()).then(|| s.hostnames.clone()),
                ..EndpointMatch::default()
            },
            labels: [("app".to_string(), s.app.clone())].into_iter().collect(),
            copy_labels: Vec::new(),
        })
        .collect();
    let mut m = LabelMapping::new(
        "unlabeled-suggestions",
        LabelMappingSpec { priority: 0, rules },
    );
    m.metadata.annotations = None;
    let body = serde_yaml::to_string(&m)?;
    Ok(format!(
        "# Suggested by `kubectl bulkhead unlabeled --suggest` from flows {} to {}.\n\
         # Edit the app values (and add env, role...), then kubectl apply -f.\n{body}",
        window.since, window.until
    ))
}
