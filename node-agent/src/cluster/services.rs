//! The watch of Services (cluster-wide, list and watch only): it keeps a
//! [`ServiceIndex`] that names the Service of every flow record sent to a
//! Service address.
//!
//! ```text
//!  watcher(Service) ─► reflector store ─(coalesced, after each complete
//!                                         list and on each change)─► ServiceIndex
//!                                                                      │ watch channel
//!  main loop: flush ─► FlowSink reads the latest index (never waits) ◄─┘
//! ```
//!
//! The watch runs in its own task. When it fails (the API server is away,
//! RBAC lacks `services`) it retries with backoff and the last index stays;
//! attaching endpoints and draining flows never wait on it, and records
//! keep their Service address whatever becomes of the name.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Service;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Api, Client};
use tokio::sync::watch;

use crate::flows::ServiceIndex;

/// Changes arriving this close together make one new index.
const COALESCE: Duration = Duration::from_millis(250);

/// The server ends each watch call within this (the client's read timeout
/// is longer), so no call hangs on a half-open connection.
const WATCH_TIMEOUT_SECONDS: u32 = 240;

/// Starts the watch; the receiver holds the latest index (empty until the
/// first complete list).
pub fn spawn(client: Client) -> watch::Receiver<Arc<ServiceIndex>> {
    let (tx, rx) = watch::channel(Arc::new(ServiceIndex::default()));
    tokio::spawn(run(client, tx));
    rx
}

async fn run(client: Client, tx: watch::Sender<Arc<ServiceIndex>>) {
    let api: Api<Service> = Api::all(client);
    let config = watcher::Config::default().timeout(WATCH_TIMEOUT_SECONDS);
    let (store, writer) = reflector::store();
    let mut stream = watcher(api, config)
        .default_backoff()
        // Only the spec's addresses and ports and the status's ingress
        // matter; managed fields are most of a stored object.
        .modify(|s: &mut Service| s.metadata.managed_fields = None)
        .reflect(writer)
        .boxed();
    let mut listing = false;
    let mut dirty = false;
    loop {
        let next = if dirty {
            match tokio::time::timeout(COALESCE, stream.try_next()).await {
                Ok(next) => next,
                Err(_) => {
                    let index = ServiceIndex::new(store.state().iter().map(|s| s.as_ref()));
                    tracing::debug!(services = store.state().len(), "Service index rebuilt");
                    dirty = false;
                    if tx.send(Arc::new(index)).is_err() {
                        return;
                    }
                    continue;
                }
            }
        } else {
            stream.try_next().await
        };
        match next {
            Ok(Some(watcher::Event::Init)) => listing = true,
            Ok(Some(watcher::Event::InitApply(_))) => {}
            Ok(Some(watcher::Event::InitDone)) => {
                listing = false;
                dirty = true;
            }
            Ok(Some(watcher::Event::Apply(_) | watcher::Event::Delete(_))) => dirty |= !listing,
            Ok(None) => return,
            Err(e) => tracing::warn!(
                error = %e,
                "Service watch failed; retrying, records keep Service addresses and the names known so far"
            ),
        }
    }
}
