//! The pair-by-pair count (every source against every destination, no
//! classes, no cache): what `count::count` must equal, on random clusters.

use std::collections::BTreeMap;

use bulkhead_api::identity::WORLD;
use bulkhead_policy::Output;

use super::count::{Acc, Tally};
use super::pairs::{pair, seen_by, NodeView, RuleClasses};
use super::{finish, sides, Exposure, ExposureOptions, PORTS, PROTOCOLS};

pub(crate) fn exposure(out: &Output, opts: &ExposureOptions) -> Exposure {
    let mut rule_classes = RuleClasses::default();
    let views: BTreeMap<&str, NodeView<'_>> = out
        .rule_maps
        .iter()
        .map(|(n, m)| (n.as_str(), NodeView::new(m, &mut rule_classes)))
        .collect();
    let (sources, dests) = sides(out, &views, &opts.group_key);
    let mut tally = Tally::new(PROTOCOLS.len() as u64 * PORTS, opts.risky.len());
    for d in &dests {
        let mut acc = Acc::new(opts.risky.len());
        for src in &sources {
            if src.managed.is_some() && src.address == d.address {
                continue; // itself
            }
            let dst_seen_src = seen_by(&d.side, src.address, src.seen);
            let src_seen_dst = src
                .managed
                .as_ref()
                .map_or(WORLD, |s| seen_by(s, d.address, d.seen));
            acc.add(
                &pair(src, src_seen_dst, &d.side, dst_seen_src, &opts.risky),
                1,
            );
        }
        tally.endpoint(&d.app, &acc);
    }
    finish(opts, sources.len() as u64, tally)
}
