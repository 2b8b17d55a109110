//! The one list/watch/re-list bookkeeping of every watch in Bulkhead (the
//! operator's feeds, the agent's IdentityMap and Service watches).
//!
//! ```text
//!  watcher::Event ──► Bookkeeping ──► Seen::{Applied, Deleted, Synced}
//!        Init          relisting = {}
//!        InitApply     relisting += key, known += key
//!        InitDone      known − relisting ──► Deleted each, then Synced
//!        Apply/Delete  known ± key
//! ```
//!
//! A watch that breaks and re-lists reports, after the re-list, what
//! vanished while it was down as deleted: the consumer never keeps an object
//! that no longer exists. Keys are typed ([`ObjectKey`]), never
//! `"namespace/name"` strings split again later.

use std::collections::BTreeSet;
use std::fmt;

use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

/// Which object: its namespace (absent for cluster-scoped kinds) and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectKey {
    pub fn of<K: Resource>(obj: &K) -> Self {
        ObjectKey {
            namespace: obj.meta().namespace.clone(),
            name: obj.name_any(),
        }
    }

    /// The namespace, or `""` for a cluster-scoped object.
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or("")
    }
}

impl fmt::Display for ObjectKey {
    /// `namespace/name`, or `name` for a cluster-scoped object.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// A watcher event after the bookkeeping.
#[derive(Debug, PartialEq)]
pub enum Seen<K> {
    /// The object as it is now.
    Applied(ObjectKey, K),
    /// The object is gone: deleted, or missing from a re-list.
    Deleted(ObjectKey),
    /// A (re)list is complete: what was seen so far is all there is.
    Synced,
}

/// What the last list and the events since say exists.
#[derive(Debug, Default)]
pub struct Bookkeeping {
    known: BTreeSet<ObjectKey>,
    relisting: Option<BTreeSet<ObjectKey>>,
}

impl Bookkeeping {
    /// One watcher event in, what the consumer must do out.
    pub fn event<K: Resource>(&mut self, event: watcher::Event<K>) -> Vec<Seen<K>> {
        match event {
            watcher::Event::Init => {
                self.relisting = Some(BTreeSet::new());
                vec![]
            }
            watcher::Event::InitApply(obj) | watcher::Event::Apply(obj) => {
                let key = ObjectKey::of(&obj);
                if let Some(seen) = &mut self.relisting {
                    seen.insert(key.clone());
                }
                self.known.insert(key.clone());
                vec![Seen::Applied(key, obj)]
            }
            watcher::Event::Delete(obj) => {
                let key = ObjectKey::of(&obj);
                self.known.remove(&key);
                if let Some(seen) = &mut self.relisting {
                    seen.remove(&key);
                }
                vec![Seen::Deleted(key)]
            }
            watcher::Event::InitDone => {
                let mut out = Vec::new();
                if let Some(seen) = self.relisting.take() {
                    let gone = self.known.difference(&seen);
                    out.extend(gone.map(|k| Seen::Deleted(k.clone())));
                    self.known = seen;
                }
                out.push(Seen::Synced);
                out
            }
        }
    }

    /// How many objects exist now.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// What exists now, in key order.
    pub fn known(&self) -> impl Iterator<Item = &ObjectKey> {
        self.known.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Node, Pod};

    fn node(name: &str) -> Node {
        let mut n = Node::default();
        n.metadata.name = Some(name.into());
        n
    }

    fn names<K>(seen: Vec<Seen<K>>) -> Vec<String> {
        seen.into_iter()
            .map(|s| match s {
                Seen::Applied(k, _) => format!("+{k}"),
                Seen::Deleted(k) => format!("-{k}"),
                Seen::Synced => "synced".into(),
            })
            .collect()
    }

    #[test]
    fn a_relist_reports_what_vanished_while_the_watch_was_down() {
        let mut book = Bookkeeping::default();
        let mut run = |e| names(book.event(e));
        assert!(run(watcher::Event::Init).is_empty());
        assert_eq!(run(watcher::Event::InitApply(node("a"))), ["+a"]);
        assert_eq!(run(watcher::Event::InitApply(node("b"))), ["+b"]);
        assert_eq!(run(watcher::Event::InitDone), ["synced"]);
        assert_eq!(run(watcher::Event::Apply(node("c"))), ["+c"]);
        assert_eq!(run(watcher::Event::Delete(node("a"))), ["-a"]);
        // The watch broke; b went away unseen, d came.
        assert!(run(watcher::Event::Init).is_empty());
        assert_eq!(run(watcher::Event::InitApply(node("c"))), ["+c"]);
        assert_eq!(run(watcher::Event::InitApply(node("d"))), ["+d"]);
        assert_eq!(run(watcher::Event::InitDone), ["-b", "synced"]);
        let now: Vec<String> = book.known().map(|k| k.to_string()).collect();
        assert_eq!(now, ["c", "d"], "what exists now");
        assert_eq!(book.len(), 2);
    }

    #[test]
    fn a_delete_during_a_relist_is_reported_once() {
        let mut book = Bookkeeping::default();
        for e in [watcher::Event::Init, watcher::Event::InitApply(node("a"))] {
            book.event(e);
        }
        book.event(watcher::Event::<Node>::InitDone);
        book.event(watcher::Event::<Node>::Init);
        assert_eq!(
            names(book.event(watcher::Event::InitApply(node("a")))),
            ["+a"]
        );
        assert_eq!(names(book.event(watcher::Event::Delete(node("a")))), ["-a"]);
        assert_eq!(
            names(book.event(watcher::Event::<Node>::InitDone)),
            ["synced"]
        );
        assert!(book.is_empty());
    }

    #[test]
    fn namespaced_keys_are_typed_and_print_as_namespace_slash_name() {
        let mut pod = Pod::default();
        pod.metadata.name = Some("web-1".into());
        pod.metadata.namespace = Some("prod".into());
        let key = ObjectKey::of(&pod);
        assert_eq!(key.namespace(), "prod");
        assert_eq!(key.name, "web-1");
        assert_eq!(key.to_string(), "prod/web-1");
        assert_eq!(ObjectKey::of(&node("n1")).namespace(), "");
    }
}
