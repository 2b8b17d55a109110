//! The operator as the lab runs it: the real `bulkhead-operator` binary, as
//! the user `bulkhead-operator` (its own kubeconfig, rights from
//! `deploy/rbac/operator.yaml`), a child process with its log in the state
//! directory. Several can run at once, as replicas of one Deployment would:
//! each has its own Lease identity and metrics port.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::kubectl::Kubectl;
use crate::kubelet;
use crate::process::{free_port, Lifetime, Process};
use crate::state::StateDir;

/// Where the operator's Lease lives.
pub const OPERATOR_NAMESPACE: &str = "bulkhead-system";

/// The RBAC manifests in the workspace.
pub fn rbac_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("deploy")
        .join("rbac")
}

/// Creates the operator's namespace and applies `deploy/rbac/operator.yaml`.
pub fn install_rbac(admin: &Kubectl) -> Result<()> {
    kubelet::ensure_namespace(admin, OPERATOR_NAMESPACE, &kubelet::Labels::new())?;
    let manifest = rbac_dir().join("operator.yaml");
    admin
        .run(&["apply", "-f", &manifest.to_string_lossy()])
        .map(drop)
}

/// Applies `deploy/rbac/agent.yaml.tmpl` for `node`'s agent.
pub fn install_agent_rbac(admin: &Kubectl, node: &str) -> Result<()> {
    let template = rbac_dir().join("agent.yaml.tmpl");
    let text = std::fs::read_to_string(&template).map_err(Error::io("read", template))?;
    admin
        .run_with_stdin(&["apply", "-f", "-"], &text.replace("NODE", node))
        .map(drop)
}

/// How to start one operator replica.
#[derive(Clone, Debug)]
pub struct OperatorConfig {
    /// The replica's Lease identity; also names its log (`operator-<name>.log`).
    pub name: String,
    pub binary: PathBuf,
    pub kubeconfig: PathBuf,
    pub lifetime: Lifetime,
    /// More flags, e.g. `--default-mode=full`.
    pub extra_args: Vec<String>,
}

/// A running operator replica.
#[derive(Debug)]
pub struct Operator {
    pub name: String,
    pub metrics_addr: SocketAddr,
    process: Process,
}

impl Operator {
    /// Starts the replica; `wait_ready` waits for its first full compile.
    pub fn start(state: &StateDir, config: &OperatorConfig) -> Result<Self> {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let metrics_addr = SocketAddr::new(ip, free_port(ip)?);
        let mut cmd = Command::new(&config.binary);
        cmd.env("KUBECONFIG", &config.kubeconfig)
            .env("NO_COLOR", "1")
            .env(
                "RUST_LOG",
                std::env::var("BULKHEAD_OPERATOR_LOG").unwrap_or_else(|_| "info".into()),
            )
            .arg(format!("--metrics-addr={metrics_addr}"))
            .arg(format!("--lease-namespace={OPERATOR_NAMESPACE}"))
            .arg(format!("--identity={}", config.name))
            .args(&config.extra_args);
        let process = Process::spawn(
            state,
            &format!("operator-{}", config.name),
            cmd,
            config.lifetime,
        )?;
        Ok(Self {
            name: config.name.clone(),
            metrics_addr,
            process,
        })
    }

    /// Waits until `/readyz` says the first full compile is done.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok((200, _)) = http_get(self.metrics_addr, "/readyz") {
                return Ok(());
            }
            if !self.process.is_running() || Instant::now() > deadline {
                return Err(self.process.not_ready("waiting for /readyz"));
            }
            sleep(Duration::from_millis(100));
        }
    }

    /// The Prometheus text of `/metrics`.
    pub fn metrics(&self) -> Result<String> {
        match http_get(self.metrics_addr, "/metrics")? {
            (200, body) => Ok(body),
            (code, body) => Err(Error::Unexpected {
                what: format!("operator {} /metrics", self.name),
                problem: format!("HTTP {code}: {body}"),
            }),
        }
    }

    /// The value of a metric sample without labels, e.g. `bulkhead_leader`.
    pub fn metric(&self, name: &str) -> Result<Option<f64>> {
        let text = self.metrics()?;
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(' '))
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.trim().parse().ok()))
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    pub fn pid(&self) -> i32 {
        self.process.pid()
    }

    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// SIGTERM, then SIGKILL after the grace period.
    pub fn stop(&mut self) -> Result<()> {
        self.process.stop()
    }

    /// SIGKILL at once: a crash, with no chance to hand over.
    pub fn kill(&mut self) -> Result<()> {
        self.process.kill()
    }

    /// Leaves it running when this value is dropped (`bulkhead-lab up`).
    pub fn keep(&mut self) {
        self.process.keep();
    }
}

/// A minimal HTTP/1.0 GET (no chunked bodies to decode): (status code, body).
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let err = |e: std::io::Error| Error::Io {
        action: "GET",
        path: PathBuf::from(format!("http://{addr}{path}")),
        source: e,
    };
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(err)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(err)?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(err)?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(err)?;
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    Ok((code, body))
}
