//! The collector as the lab runs it: the real `bulkhead-collector` binary in
//! the root namespace, listening on the lab's bridge address (which every
//! node reaches, as it reaches the API server), with its SQLite store in the
//! state directory and TokenReview against the lab's API server.
//!
//! Agents authenticate with a token of the `bulkhead-system/bulkhead-agent`
//! ServiceAccount bound to their Node object (`kubectl create token
//! --bound-object-kind Node`), so the token's node-name claim pins each
//! agent to its own node's records.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::kubectl::Kubectl;
use crate::operator::{http_get, OPERATOR_NAMESPACE};
use crate::process::{Lifetime, Process};
use crate::state::StateDir;

/// The collector's port on the bridge.
pub const COLLECTOR_PORT: u16 = 9470;
/// The agents' ServiceAccount (namespace `bulkhead-system`).
pub const AGENT_SERVICE_ACCOUNT: &str = "bulkhead-agent";

/// How to start the collector.
#[derive(Clone, Debug)]
pub struct CollectorConfig {
    pub binary: PathBuf,
    pub listen: SocketAddr,
    /// For TokenReview (the admin's: it may create TokenReviews).
    pub kubeconfig: PathBuf,
    pub data_dir: PathBuf,
    /// More flags (detections, syslog and webhook destinations).
    pub extra_args: Vec<String>,
    pub lifetime: Lifetime,
}

/// The running collector.
#[derive(Debug)]
pub struct Collector {
    pub config: CollectorConfig,
    process: Process,
}

impl Collector {
    pub fn start(state: &StateDir, config: &CollectorConfig) -> Result<Self> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(Error::io("create", config.data_dir.clone()))?;
        let mut cmd = Command::new(&config.binary);
        cmd.env("KUBECONFIG", &config.kubeconfig)
            .env("NO_COLOR", "1")
            .env(
                "RUST_LOG",
                std::env::var("BULKHEAD_COLLECTOR_LOG").unwrap_or_else(|_| "info".into()),
            )
            .arg(format!("--listen={}", config.listen))
            .arg(format!("--data-dir={}", config.data_dir.display()))
            .arg("--auth=tokenreview")
            .arg(format!(
                "--agent-service-account={OPERATOR_NAMESPACE}:{AGENT_SERVICE_ACCOUNT}"
            ))
            .args(&config.extra_args);
        let process = Process::spawn(state, "collector", cmd, config.lifetime)?;
        Ok(Collector {
            config: config.clone(),
            process,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.config.listen)
    }

    /// Waits until `/readyz` answers 200.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok((200, _)) = http_get(self.config.listen, "/readyz") {
                return Ok(());
            }
            if !self.process.is_running() || Instant::now() > deadline {
                return Err(self.process.not_ready("waiting for /readyz"));
            }
            sleep(Duration::from_millis(100));
        }
    }

    /// GET a path of the query API: (status, body).
    pub fn get(&self, path_and_query: &str) -> Result<(u16, String)> {
        http_get(self.config.listen, path_and_query)
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// SIGKILL: an outage with no goodbye.
    pub fn kill(&mut self) -> Result<()> {
        self.process.kill()
    }

    pub fn keep(&mut self) {
        self.process.keep();
    }
}

/// The agents' ServiceAccount, created if missing.
pub fn ensure_agent_service_account(admin: &Kubectl) -> Result<()> {
    let manifest = format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {AGENT_SERVICE_ACCOUNT}\n  namespace: {OPERATOR_NAMESPACE}\n"
    );
    admin
        .run_with_stdin(&["apply", "-f", "-"], &manifest)
        .map(drop)
}

/// A token of the agents' ServiceAccount bound to `node`'s Node object,
/// written to `path` (0600).
pub fn write_node_token(admin: &Kubectl, node: &str, path: &Path) -> Result<()> {
    let token = admin.run(&[
        "create",
        "token",
        AGENT_SERVICE_ACCOUNT,
        "-n",
        OPERATOR_NAMESPACE,
        "--bound-object-kind=Node",
        &format!("--bound-object-name={node}"),
        "--duration=48h",
    ])?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(Error::io("create", dir.to_owned()))?;
    }
    std::fs::write(path, token.trim()).map_err(Error::io("write", path.to_owned()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(Error::io("chmod", path.to_owned()))
}
