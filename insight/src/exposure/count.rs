//! Counting reachable pairs over every (source, destination), by classes.
//!
//! ```text
//!  sources ──┬─ address is some node's own ─► "special": judged one by one
//!            └─ else: class = (rule class, mode, host's node, peer class of the identity seen)
//!  destinations ─┬─ address is some node's own ─► judged against every source one by one
//!                └─ else: class as above ─► one verdict per (source class, destination class)
//!                   × the source class's size, less the destination itself
//! ```
//!
//! Why the classes are exact: a pair's verdicts depend on each side's rules
//! (with the subjects left out), mode and, for hosts, failsafe ports, and on
//! the identity each side sees of the other, which enters only through rule
//! peer lists. The one address-dependent step, `seen_by` (a node sees its
//! own addresses as `host`), only differs for node addresses, and those
//! sources and destinations are judged one by one. `naive::count` (tests)
//! is the pair-by-pair loop this must equal.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use bulkhead_api::identity::WORLD;
use bulkhead_api::policy::Protocol;

use super::pairs::{pair, seen_by, PairReach, PeerClasses, Side, SideKey, Source};
use super::{GroupExposure, Reach};

/// A destination: a managed endpoint with its address, the identity other
/// nodes give it, and its application.
pub(super) struct Dest<'a> {
    pub(super) side: Side<'a>,
    pub(super) address: Option<IpAddr>,
    pub(super) seen: u32,
    pub(super) app: String,
}

/// One verdict computation per distinct (source, seen, destination, seen).
pub(super) struct Pairs<'a, 'r> {
    cache: HashMap<(Option<SideKey<'a>>, u32, SideKey<'a>, u32), PairReach>,
    risky: &'r [(Protocol, u16)],
}

impl<'a, 'r> Pairs<'a, 'r> {
    pub(super) fn new(risky: &'r [(Protocol, u16)]) -> Self {
        Self {
            cache: HashMap::new(),
            risky,
        }
    }

    pub(super) fn get(
        &mut self,
        src: &Source<'a>,
        src_seen_dst: u32,
        dst: &Side<'a>,
        dst_seen_src: u32,
    ) -> &PairReach {
        let key = (
            src.managed.as_ref().map(Side::key),
            src_seen_dst,
            dst.key(),
            dst_seen_src,
        );
        let risky = self.risky;
        self.cache
            .entry(key)
            .or_insert_with(|| pair(src, src_seen_dst, dst, dst_seen_src, risky))
    }

    /// One source against one destination, as `simulate` judges it; `None`
    /// for the destination itself.
    pub(super) fn judge(&mut self, src: &Source<'a>, d: &Dest<'a>) -> Option<&PairReach> {
        if src.managed.is_some() && src.address == d.address {
            return None;
        }
        let dst_seen_src = seen_by(&d.side, src.address, src.seen);
        let src_seen_dst = src
            .managed
            .as_ref()
            .map_or(WORLD, |s| seen_by(s, d.address, d.seen));
        Some(self.get(src, src_seen_dst, &d.side, dst_seen_src))
    }
}

/// One destination's counts so far.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Acc {
    sources: u64,
    now: u64,
    full: u64,
    /// Per risky port: (reachable now, if full).
    risky: Vec<(u64, u64)>,
}

impl Acc {
    pub(super) fn new(risky: usize) -> Self {
        Self {
            sources: 0,
            now: 0,
            full: 0,
            risky: vec![(0, 0); risky],
        }
    }

    pub(super) fn add(&mut self, p: &PairReach, times: u64) {
        self.sources += times;
        self.now += p.now * times;
        self.full += p.full * times;
        for (a, (n, f)) in self.risky.iter_mut().zip(&p.risky) {
            a.0 += u64::from(*n) * times;
            a.1 += u64::from(*f) * times;
        }
    }

    fn remove(&mut self, p: &PairReach) {
        self.sources -= 1;
        self.now -= p.now;
        self.full -= p.full;
        for (a, (n, f)) in self.risky.iter_mut().zip(&p.risky) {
            a.0 -= u64::from(*n);
            a.1 -= u64::from(*f);
        }
    }
}

/// The sums per application, overall and per risky port.
pub(super) struct Tally {
    per_source: u64,
    pub(super) apps: BTreeMap<String, GroupExposure>,
    pub(super) overall: GroupExposure,
    pub(super) ports: Vec<Reach>,
}

impl Tally {
    pub(super) fn new(per_source: u64, risky: usize) -> Self {
        Self {
            per_source,
            apps: BTreeMap::new(),
            overall: GroupExposure {
                name: "overall".into(),
                ..Default::default()
            },
            ports: vec![Reach::default(); risky],
        }
    }

    /// Adds one destination endpoint.
    pub(super) fn endpoint(&mut self, app: &str, a: &Acc) {
        let all = Reach {
            possible: a.sources * self.per_source,
            reachable: a.now,
            reachable_if_full: a.full,
            reduction_percent: 0.0,
        };
        let risky = Reach {
            possible: a.sources * a.risky.len() as u64,
            reachable: a.risky.iter().map(|r| r.0).sum(),
            reachable_if_full: a.risky.iter().map(|r| r.1).sum(),
            reduction_percent: 0.0,
        };
        for (port, (n, f)) in self.ports.iter_mut().zip(&a.risky) {
            port.possible += a.sources;
            port.reachable += n;
            port.reachable_if_full += f;
        }
        let g = self
            .apps
            .entry(app.to_string())
            .or_insert_with(|| GroupExposure {
                name: app.to_string(),
                ..Default::default()
            });
        for g in [g, &mut self.overall] {
            g.endpoints += 1;
            g.all_ports.add(&all);
            g.risky_ports.add(&risky);
        }
    }
}

/// Every destination against every source, one verdict per class pair.
pub(super) fn count<'a>(
    hosts: &HashSet<IpAddr>,
    peers: &mut PeerClasses,
    sources: &[Source<'a>],
    dests: &[Dest<'a>],
    pairs: &mut Pairs<'a, '_>,
    tally: &mut Tally,
) {
    let nrisky = pairs.risky.len();
    let special = |a: Option<IpAddr>| a.is_none_or(|a| hosts.contains(&a));
    // Source classes: (representative, canonical seen identity, size).
    let mut classes: Vec<(usize, u32, u64)> = Vec::new();
    let mut class_of: Vec<usize> = vec![usize::MAX; sources.len()];
    let mut index: HashMap<(Option<SideKey<'a>>, u32), usize> = HashMap::new();
    let mut alone: Vec<usize> = Vec::new();
    let mut by_address: HashMap<IpAddr, Vec<usize>> = HashMap::new();
    for (i, s) in sources.iter().enumerate() {
        if s.address.is_some_and(|a| hosts.contains(&a)) {
            alone.push(i);
            continue;
        }
        let seen = peers.canon(s.seen);
        let c = *index
            .entry((s.managed.as_ref().map(Side::key), seen))
            .or_insert_with(|| {
                classes.push((i, seen, 0));
                classes.len() - 1
            });
        classes[c].2 += 1;
        class_of[i] = c;
        if let (Some(_), Some(a)) = (&s.managed, s.address) {
            by_address.entry(a).or_default().push(i);
        }
    }
    // Destination classes: (representative, canonical seen, members).
    let mut dclasses: Vec<(usize, u32, Vec<usize>)> = Vec::new();
    let mut dindex: HashMap<(SideKey<'a>, u32), usize> = HashMap::new();
    for (i, d) in dests.iter().enumerate() {
        if special(d.address) {
            let mut acc = Acc::new(nrisky);
            for s in sources {
                if let Some(p) = pairs.judge(s, d) {
                    acc.add(p, 1);
                }
            }
            tally.endpoint(&d.app, &acc);
            continue;
        }
        let seen = peers.canon(d.seen);
        let c = *dindex.entry((d.side.key(), seen)).or_insert_with(|| {
            dclasses.push((i, seen, Vec::new()));
            dclasses.len() - 1
        });
        dclasses[c].2.push(i);
    }
    for (rep, dseen, members) in &dclasses {
        let side = dests[*rep].side;
        // Every source class at its size; then per member, less itself
        // (a member is in its own source class) and plus the node addresses.
        let mut base = Acc::new(nrisky);
        for (r, sseen, size) in &classes {
            let src = &sources[*r];
            let src_seen_dst = if src.managed.is_some() { *dseen } else { WORLD };
            base.add(pairs.get(src, src_seen_dst, &side, *sseen), *size);
        }
        for m in members {
            let d = &dests[*m];
            let mut acc = base.clone();
            for &si in d
                .address
                .and_then(|a| by_address.get(&a))
                .into_iter()
                .flatten()
            {
                let (r, sseen, _) = classes[class_of[si]];
                let src = &sources[r];
                acc.remove(pairs.get(src, *dseen, &side, sseen));
            }
            for &si in &alone {
                if let Some(p) = pairs.judge(&sources[si], d) {
                    acc.add(p, 1);
                }
            }
            tally.endpoint(&d.app, &acc);
        }
    }
}
