//! Numeric identities: one per distinct segmentation label set, stable across
//! recompiles, restarts, failovers and upgrades.
//!
//! ```text
//!            get_or_allocate                     release (nothing uses it)
//!  new set ─────────────────► live  ─────────────────────────────► quarantined
//!  (number: high-water mark)   ▲                                       │
//!                              └──── the same set comes back ──────────┤
//!                                                                      │ quarantine over
//!                                                                      ▼ (advance)
//!                                                                    free
//! ```
//!
//! Two invariants hold, and the property tests in `tests/identities.rs`
//! check them over random sequences of allocations, releases, clock moves and
//! restarts:
//!
//! - a label set keeps its number for as long as anything uses it;
//! - a released number is not given to a different label set until its
//!   quarantine has passed (a returning label set gets its own number back).
//!
//! The quarantine (24 hours by default, [`DEFAULT_QUARANTINE`]) protects
//! what still carries a number after its last endpoint went away: BPF maps
//! of an agent that has not caught up, conntrack entries, flow records in
//! an agent's spool or in flight to the collector. Those live for minutes
//! (an agent down for hours is a long outage); a day covers every one of them
//! with a wide margin and keeps the quarantine list small (what a busy
//! cluster releases in a day). Stored flow history needs no quarantine:
//! records carry their labels as they were.
//!
//! The numbers in use and in quarantine are all the state: a new label set
//! gets one more than the highest of them (the high-water mark), so nothing
//! below the mark is free except numbers whose quarantine has passed.
//! Quarantined numbers are published in the IdentityMap shards next to the
//! live ones, so [`IdentityAllocation::from_identity_maps`] rebuilds exactly
//! this state after a restart or on the replica that takes over.
//!
//! No clock is read here: the caller moves the allocation's time forward
//! ([`IdentityAllocation::advance`]), and releases are stamped with it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bulkhead_api::identity::FIRST_ALLOCATED;
use bulkhead_api::{IdentityMapSpec, Labels, ReleasedIdentity};
use jiff::Timestamp;

/// How long a released number stays reserved for its label set by default.
pub const DEFAULT_QUARANTINE: Duration = Duration::from_secs(24 * 60 * 60);

/// Label set ↔ number for the sets in use, and the numbers in quarantine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityAllocation {
    by_labels: BTreeMap<Labels, u32>,
    by_id: BTreeMap<u32, Labels>,
    released: BTreeMap<u32, Released>,
    released_by_labels: BTreeMap<Labels, u32>,
    /// (release time, number): what [`Self::advance`] frees first.
    expiry: BTreeSet<(Timestamp, u32)>,
    now: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Released {
    labels: Labels,
    at: Timestamp,
}

impl Default for IdentityAllocation {
    fn default() -> Self {
        Self {
            by_labels: BTreeMap::new(),
            by_id: BTreeMap::new(),
            released: BTreeMap::new(),
            released_by_labels: BTreeMap::new(),
            expiry: BTreeSet::new(),
            now: Timestamp::UNIX_EPOCH,
        }
    }
}

impl IdentityAllocation {
    /// Rebuilds an allocation from published shards: the numbers in use and
    /// the numbers in quarantine. Shards of an older operator (no quarantine)
    /// and shards of two shard counts at once (during a resharding) read too.
    /// Where two entries disagree, the one in use and then the lower number
    /// wins; a number that loses goes into quarantine, since agents may
    /// still carry it. The clock starts at the latest release seen; move it
    /// to the present with [`Self::advance`].
    pub fn from_identity_maps<'a>(shards: impl IntoIterator<Item = &'a IdentityMapSpec>) -> Self {
        let mut live: BTreeMap<u32, Labels> = BTreeMap::new();
        let mut released: BTreeMap<u32, ReleasedIdentity> = BTreeMap::new();
        for shard in shards {
            for entry in shard.identities.iter().filter(|e| e.id >= FIRST_ALLOCATED) {
                live.entry(entry.id).or_insert_with(|| entry.labels.clone());
            }
            for entry in shard.released.iter().filter(|e| e.id >= FIRST_ALLOCATED) {
                let kept = released.entry(entry.id).or_insert_with(|| entry.clone());
                if entry.released_at > kept.released_at {
                    *kept = entry.clone();
                }
            }
        }
        let mut alloc = Self::default();
        let mut losers = Vec::new();
        for (id, labels) in live {
            if alloc.by_labels.contains_key(&labels) {
                losers.push((id, labels));
            } else {
                alloc.by_labels.insert(labels.clone(), id);
                alloc.by_id.insert(id, labels);
            }
        }
        let latest = released.values().map(|r| r.released_at).max();
        alloc.now = latest.unwrap_or(Timestamp::UNIX_EPOCH);
        for (id, entry) in released {
            if !alloc.by_id.contains_key(&id) {
                alloc.quarantine(id, entry.labels, entry.released_at);
            }
        }
        for (id, labels) in losers {
            if !alloc.released.contains_key(&id) {
                alloc.quarantine(id, labels, alloc.now);
            }
        }
        alloc
    }

    fn quarantine(&mut self, id: u32, labels: Labels, at: Timestamp) {
        // One number per label set in quarantine: the later release wins, and
        // the other number is simply free again later (it was released too).
        if let Some(other) = self.released_by_labels.get(&labels).copied() {
            let older = self.released.get(&other).is_none_or(|r| r.at <= at);
            if !older {
                self.expiry.insert((at, id));
                self.released.insert(id, Released { labels, at });
                return;
            }
            self.released_by_labels.remove(&labels);
        }
        if !self.by_labels.contains_key(&labels) {
            self.released_by_labels.insert(labels.clone(), id);
        }
        self.expiry.insert((at, id));
        self.released.insert(id, Released { labels, at });
    }

    fn unquarantine(&mut self, id: u32) -> Option<Released> {
        let r = self.released.remove(&id)?;
        self.expiry.remove(&(r.at, id));
        if self.released_by_labels.get(&r.labels) == Some(&id) {
            self.released_by_labels.remove(&r.labels);
        }
        Some(r)
    }

    /// The number of `labels`, allocating one if the set is new. A set that
    /// comes back from quarantine gets its old number.
    pub fn get_or_allocate(&mut self, labels: &Labels) -> u32 {
        if let Some(id) = self.by_labels.get(labels) {
            return *id;
        }
        let id = match self.released_by_labels.get(labels).copied() {
            Some(id) => {
                self.unquarantine(id);
                id
            }
            None => self.next_id(),
        };
        self.by_labels.insert(labels.clone(), id);
        self.by_id.insert(id, labels.clone());
        id
    }

    /// The number of `labels`, if it is in use.
    pub fn get(&self, labels: &Labels) -> Option<u32> {
        self.by_labels.get(labels).copied()
    }

    /// The label set numbered `id`, if it is in use.
    pub fn labels_of(&self, id: u32) -> Option<&Labels> {
        self.by_id.get(&id)
    }

    /// Every label set in use and its number.
    pub fn iter(&self) -> impl Iterator<Item = (&Labels, u32)> {
        self.by_labels.iter().map(|(l, id)| (l, *id))
    }

    /// Every number in quarantine, as published in the shards.
    pub fn released(&self) -> impl Iterator<Item = ReleasedIdentity> + '_ {
        self.released.iter().map(|(id, r)| ReleasedIdentity {
            id: *id,
            labels: r.labels.clone(),
            released_at: r.at,
        })
    }

    /// Whether `id` is in quarantine.
    pub fn is_released(&self, id: u32) -> bool {
        self.released.contains_key(&id)
    }

    /// The number a new label set would get: one above every number in use
    /// or in quarantine.
    pub fn next_id(&self) -> u32 {
        let top = |m: Option<u32>| m.map_or(FIRST_ALLOCATED, |id| id.saturating_add(1));
        let live = top(self.by_id.last_key_value().map(|(id, _)| *id));
        let held = top(self.released.last_key_value().map(|(id, _)| *id));
        live.max(held)
    }

    /// The allocation's clock: releases are stamped with it.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Moves the clock to `now` (never back) and frees the numbers whose
    /// quarantine has passed; returns them.
    pub fn advance(&mut self, now: Timestamp, quarantine: Duration) -> Vec<u32> {
        self.now = self.now.max(now);
        let hold = i64::try_from(quarantine.as_secs()).unwrap_or(i64::MAX);
        let cutoff = self.now.as_second().saturating_sub(hold);
        let mut freed = Vec::new();
        while let Some((at, id)) = self.expiry.first().copied() {
            if at.as_second() > cutoff {
                break;
            }
            self.unquarantine(id);
            freed.push(id);
        }
        freed
    }

    /// Puts a label set nobody uses any more into quarantine.
    pub fn release(&mut self, id: u32) {
        if let Some(labels) = self.by_id.remove(&id) {
            self.by_labels.remove(&labels);
            self.quarantine(id, labels, self.now);
        }
    }

    /// Releases every label set whose number `keep` rejects; returns them.
    pub fn retain(&mut self, mut keep: impl FnMut(u32) -> bool) -> Vec<u32> {
        let gone: Vec<u32> = self.by_id.keys().copied().filter(|id| !keep(*id)).collect();
        for id in &gone {
            self.release(*id);
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(app: &str) -> Labels {
        Labels::from([("app".to_string(), app.to_string())])
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn a_returning_label_set_gets_its_number_back_and_others_wait_for_the_quarantine() {
        let hour = Duration::from_secs(3600);
        let mut a = IdentityAllocation::default();
        a.advance(at(1_000_000), hour);
        let web = a.get_or_allocate(&set("web"));
        let db = a.get_or_allocate(&set("db"));
        a.release(db);
        assert_eq!(
            a.get_or_allocate(&set("cache")),
            db + 1,
            "db's number is held"
        );
        assert_eq!(a.get_or_allocate(&set("db")), db, "db comes back as itself");
        a.release(db);
        assert!(a.advance(at(1_000_000 + 3599), hour).is_empty());
        assert_eq!(a.advance(at(1_000_000 + 3600), hour), [db]);
        assert_eq!(a.get(&set("web")), Some(web));
    }
}
