//! `kubectl bulkhead top-talkers`.

use bulkhead_insight::talkers::{top_talkers, SortBy, TalkDirection, TalkerKey, TalkersQuery};
use serde::Serialize;

use super::args::{DirectionArg, ListFormat, SortArg, TopTalkersArgs};
use crate::render::Table;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Answer<'a> {
    since: jiff::Timestamp,
    until: jiff::Timestamp,
    by: Vec<&'a str>,
    talkers: Vec<bulkhead_insight::talkers::Talker>,
}

pub fn run(a: &TopTalkersArgs) -> anyhow::Result<()> {
    let by =
        a.by.iter()
            .map(|k| k.parse::<TalkerKey>())
            .collect::<Result<Vec<_>, _>>()?;
    let (records, window) = super::history(&a.history, "1h")?;
    let q = TalkersQuery {
        by,
        sort: match a.sort {
            SortArg::Flows => SortBy::Flows,
            SortArg::Bytes => SortBy::Bytes,
            SortArg::Peers => SortBy::Peers,
        },
        direction: match a.direction {
            DirectionArg::Egress => TalkDirection::Egress,
            DirectionArg::Ingress => TalkDirection::Ingress,
            DirectionArg::Both => TalkDirection::Both,
        },
        limit: a.limit,
        ..TalkersQuery::default()
    };
    let talkers = top_talkers(&records, &q);
    let text = match a.output {
        ListFormat::Json => {
            let answer = Answer {
                since: window.since,
                until: window.until,
                by: q.by.iter().map(TalkerKey::name).collect(),
                talkers,
            };
            serde_json::to_string_pretty(&answer)? + "\n"
        }
        ListFormat::Table => {
            let group =
                q.by.iter()
                    .map(|k| k.name().to_uppercase())
                    .collect::<Vec<_>>()
                    .join(",");
            let mut t = Table::new(&[
                "#",
                &group,
                "SENT",
                "RECEIVED",
                "BYTES",
                "PEERS",
                "TOP PEERS",
                "TOP PORTS",
            ]);
            for x in &talkers {
                let shares = |v: &[bulkhead_insight::talkers::Share]| {
                    v.iter()
                        .map(|s| format!("{} ({})", s.name, s.flows))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                t.row(vec![
                    x.rank.to_string(),
                    x.label(&q.by),
                    x.sent.flows.to_string(),
                    x.received.flows.to_string(),
                    (x.sent.bytes + x.received.bytes).to_string(),
                    x.peers.to_string(),
                    shares(&x.top_peers),
                    shares(&x.top_ports),
                ]);
            }
            if talkers.is_empty() {
                format!("no flows from {} to {}\n", window.since, window.until)
            } else {
                t.render()
            }
        }
    };
    super::emit(&text, None)
}
