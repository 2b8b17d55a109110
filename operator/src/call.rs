//! Every call to the API server has a deadline.
//!
//! A paused or overloaded API server accepts connections and then answers
//! nothing; without a deadline the caller waits forever (the Lease renewal
//! of a replica that believes it leads, a publish pass that holds up every
//! later change). Watches are the exception: they are meant to stay open,
//! and the watcher re-lists when they break.

use std::future::Future;
use std::time::Duration;

use crate::Error;

/// How long one request/response call may take, retries inside the client
/// included. Far above a healthy API server's latency (milliseconds), far
/// below what leaves a change unpublished for long.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `call` with a deadline of `after`; `action` names what it does, for
/// the error.
pub async fn bounded<T>(
    action: impl Into<String>,
    after: Duration,
    call: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(after, call).await {
        Ok(result) => result.map_err(Error::kube(action)),
        Err(_) => Err(Error::Timeout {
            action: action.into(),
            after,
        }),
    }
}
