//! Waiting for something the lab cannot be told about, by polling it.

use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Calls `check` until it returns `Some`, every 100 ms, for up to `timeout`.
/// The last error, if any, is in the timeout's message.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last_error = Some(e.to_string()),
        }
        if Instant::now() > deadline {
            let what = match last_error {
                Some(e) => format!("{what} (last error: {e})"),
                None => what.to_owned(),
            };
            return Err(Error::Timeout {
                what,
                seconds: timeout.as_secs(),
            });
        }
        sleep(Duration::from_millis(100));
    }
}
