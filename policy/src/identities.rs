//! Numeric identities: one per distinct segmentation label set, stable across
//! recompiles and restarts.
//!
//! A label set keeps its number for as long as anything uses it. Numbers are
//! never reused within an allocation's life (`next` only grows), so a flow
//! record or a stale BPF entry can never be read as a different label set.
//! After a restart the operator rebuilds the allocation from the IdentityMap
//! shards it wrote ([`IdentityAllocation::from_identity_maps`]).

use std::collections::BTreeMap;

use bulkhead_api::identity::FIRST_ALLOCATED;
use bulkhead_api::{IdentityMapSpec, Labels};

/// Label set ↔ number, and the next number to hand out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityAllocation {
    by_labels: BTreeMap<Labels, u32>,
    by_id: BTreeMap<u32, Labels>,
    next: u32,
}

impl Default for IdentityAllocation {
    fn default() -> Self {
        Self {
            by_labels: BTreeMap::new(),
            by_id: BTreeMap::new(),
            next: FIRST_ALLOCATED,
        }
    }
}

impl IdentityAllocation {
    /// Rebuilds an allocation from published shards.
    pub fn from_identity_maps<'a>(shards: impl IntoIterator<Item = &'a IdentityMapSpec>) -> Self {
        let mut alloc = Self::default();
        for shard in shards {
            for entry in &shard.identities {
                if entry.id < FIRST_ALLOCATED {
                    continue;
                }
                alloc.by_labels.insert(entry.labels.clone(), entry.id);
                alloc.by_id.insert(entry.id, entry.labels.clone());
                alloc.next = alloc.next.max(entry.id.saturating_add(1));
            }
        }
        alloc
    }

    /// The number of `labels`, allocating one if the set is new.
    pub fn get_or_allocate(&mut self, labels: &Labels) -> u32 {
        if let Some(id) = self.by_labels.get(labels) {
            return *id;
        }
        let id = self.next;
        self.next += 1;
        self.by_labels.insert(labels.clone(), id);
        self.by_id.insert(id, labels.clone());
        id
    }

    /// The number of `labels`, if it has one.
    pub fn get(&self, labels: &Labels) -> Option<u32> {
        self.by_labels.get(labels).copied()
    }

    /// The label set numbered `id`, if any.
    pub fn labels_of(&self, id: u32) -> Option<&Labels> {
        self.by_id.get(&id)
    }

    /// Every label set and its number.
    pub fn iter(&self) -> impl Iterator<Item = (&Labels, u32)> {
        self.by_labels.iter().map(|(l, id)| (l, *id))
    }

    /// The next number that will be handed out.
    pub fn next_id(&self) -> u32 {
        self.next
    }

    /// Forgets a label set nobody uses any more. Its number is not reused.
    pub fn release(&mut self, id: u32) {
        if let Some(labels) = self.by_id.remove(&id) {
            self.by_labels.remove(&labels);
        }
    }

    /// Forgets every label set whose number `keep` rejects.
    pub fn retain(&mut self, mut keep: impl FnMut(u32) -> bool) {
        self.by_id.retain(|id, _| keep(*id));
        let by_id = &self.by_id;
        self.by_labels.retain(|_, id| by_id.contains_key(id));
    }
}
