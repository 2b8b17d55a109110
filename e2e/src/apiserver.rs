//! kube-apiserver for the lab: TLS with client certificates, RBAC on,
//! service accounts signed by the lab's key, storage in the lab's etcd.
//!
//! There is no controller manager and no kubelet, so admission that waits on
//! them is off (`ServiceAccount` would refuse every pod until a controller
//! made the namespace's default account), and the `kubernetes` Service's
//! endpoints are not reconciled (a loopback address is not a valid endpoint).

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::certs::CertFiles;
use crate::error::Result;
use crate::kubectl::Kubectl;
use crate::process::{free_port, Lifetime, Process};
use crate::state::StateDir;

const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// What the API server is started with.
#[derive(Clone, Debug)]
pub struct ApiServerConfig {
    pub binary: PathBuf,
    pub etcd_url: String,
    /// The address it listens on: loopback by default; an address on the
    /// lab's bridge when agents in node namespaces must reach it.
    pub bind_address: IpAddr,
    /// The port; `None` for a free one.
    pub port: Option<u16>,
    pub serving: CertFiles,
    pub client_ca: PathBuf,
    pub service_account: CertFiles,
    pub lifetime: Lifetime,
}

/// A kube-apiserver: its process while it runs, and what restarts it on
/// the same address, so clients holding the URL reconnect on their own.
#[derive(Debug)]
pub struct ApiServer {
    config: ApiServerConfig,
    port: u16,
    /// `https://<bind address>:<port>`.
    pub url: String,
    pub process: Option<Process>,
}

impl ApiServer {
    /// Starts kube-apiserver on a free port; `wait_ready` waits for it to serve.
    pub fn start(config: ApiServerConfig, state: &StateDir) -> Result<Self> {
        let port = match config.port {
            Some(port) => port,
            None => free_port(config.bind_address)?,
        };
        let url = match config.bind_address {
            IpAddr::V4(ip) => format!("https://{ip}:{port}"),
            IpAddr::V6(ip) => format!("https://[{ip}]:{port}"),
        };
        let mut server = Self {
            config,
            port,
            url,
            process: None,
        };
        server.restart(state)?;
        Ok(server)
    }

    /// Starts it again, on the same port, after `stop`. Does not wait.
    pub fn restart(&mut self, state: &StateDir) -> Result<()> {
        if self.process.is_none() {
            self.process = Some(Process::spawn(
                state,
                "kube-apiserver",
                self.command(),
                self.config.lifetime,
            )?);
        }
        Ok(())
    }

    /// Stops it (SIGTERM, then SIGKILL); etcd and the data stay.
    pub fn stop(&mut self) -> Result<()> {
        match self.process.take() {
            Some(mut process) => process.stop(),
            None => Ok(()),
        }
    }

    /// Waits until `/readyz` answers ok to `admin` (a kubectl with admin rights).
    pub fn wait_ready(&mut self, admin: &Kubectl) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let out = admin.output(&["get", "--raw=/readyz", "--request-timeout=5s"], None)?;
            if out.success && out.stdout.trim() == "ok" {
                return Ok(());
            }
            let Some(process) = self.process.as_mut() else {
                return Ok(());
            };
            if !process.is_running() || Instant::now() > deadline {
                return Err(process.not_ready("waiting for /readyz"));
            }
            sleep(Duration::from_millis(250));
        }
    }

    fn command(&self) -> Command {
        let c = &self.config;
        let mut cmd = Command::new(&c.binary);
        cmd.arg(format!("--etcd-servers={}", c.etcd_url))
            .arg(format!("--bind-address={}", c.bind_address))
            .arg(format!("--advertise-address={}", c.bind_address))
            .arg(format!("--secure-port={}", self.port))
            .arg(format!("--tls-cert-file={}", c.serving.cert.display()))
            .arg(format!(
                "--tls-private-key-file={}",
                c.serving.key.display()
            ))
            .arg(format!("--client-ca-file={}", c.client_ca.display()))
            .arg("--authorization-mode=Node,RBAC")
            .arg("--anonymous-auth=false")
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg(format!(
                "--service-account-key-file={}",
                c.service_account.cert.display()
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                c.service_account.key.display()
            ))
            .arg(format!(
                "--service-cluster-ip-range={}",
                crate::services::SERVICE_CIDR
            ))
            .arg("--disable-admission-plugins=ServiceAccount")
            .arg("--endpoint-reconciler-type=none")
            .arg("--allow-privileged=true")
            .arg("--profiling=false");
        cmd
    }
}
