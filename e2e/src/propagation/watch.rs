//! When the API server told watchers about a change: `kubectl get --watch`
//! with a JSONPath template, each line stamped with [`now_ns`] as it
//! arrives. What the agents and the operator see comes over the same kind
//! of watch.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::prober::now_ns;
use crate::error::{Error, Result};
use crate::kubectl::Kubectl;

/// One line a watch printed, and when it arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub at_ns: u64,
    pub line: String,
}

/// A running `kubectl get --watch`; dropping it stops it.
#[derive(Debug)]
pub struct Watch {
    child: Child,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Watch {
    /// Watches what `kubectl get <what>` names (e.g. `["pod", "-n", "prod",
    /// "web"]`) and prints `template` (a JSONPath, one line per event).
    /// Returns once the first event (the current state) has arrived.
    pub fn start(kubectl: &Kubectl, what: &[&str], template: &str) -> Result<Self> {
        let kind = what.join(" ");
        let mut cmd = Command::new(&kubectl.binary);
        cmd.arg("--kubeconfig")
            .arg(&kubectl.kubeconfig)
            .arg("get")
            .args(what)
            .args(["--watch", "-o", &format!("jsonpath={template}\n")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().map_err(|source| Error::Spawn {
            program: kubectl.binary.display().to_string(),
            source,
        })?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().ok_or_else(|| Error::Unexpected {
            what: format!("kubectl get {kind} --watch"),
            problem: "has no stdout".into(),
        })?;
        let sink = Arc::clone(&seen);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let at_ns = now_ns();
                if let Ok(mut seen) = sink.lock() {
                    seen.push(Seen { at_ns, line });
                }
            }
        });
        let watch = Self { child, seen };
        let deadline = Instant::now() + Duration::from_secs(20);
        while watch.lines().is_empty() {
            if Instant::now() > deadline {
                return Err(Error::Timeout {
                    what: format!("the first event of kubectl get {kind} --watch"),
                    seconds: 20,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(watch)
    }

    /// Everything seen so far.
    pub fn lines(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
